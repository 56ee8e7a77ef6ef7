"""Availability stage: ``metadata/`` + a listing of the image bucket -> ``images/`` + rejects.

Instead of one request per image, the stage lists the bucket by three-character hash prefix (only the
prefixes its slice needs, in parallel Spark tasks) and joins. Rejects: ``missing_object``,
``missing_prefix`` (the whole prefix folder is absent, as ``data/images/ac8/`` is in the real bucket),
``too_small`` (empty files and sub-KB placeholders carry no picture).
"""

from __future__ import annotations

import logging

from deeploc import bucket as bucket_mod
from deeploc.lake import PARTITION, Lake, Slice
from deeploc.sliced_write import REASON, read_table, write_slice
from deeploc.stages.metadata import OUT_COLS as METADATA_COLS

log = logging.getLogger(__name__)

OUT_COLS = METADATA_COLS + ["exists", "size_bytes", "usable"]
REJECT_COLS = ["photo_id", "object_key", "size_bytes"]
MIN_BYTES = 1024


def listing(spark, location: str, prefixes: list[str], unsigned: bool = False, tasks: int = 64):
    """DataFrame (prefix, key, size) of the bucket under the given prefixes; see ``bucket.listing_rows``."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField("prefix", StringType(), False), StructField("key", StringType(), True),
                         StructField("size", LongType(), True)])
    rdd = spark.sparkContext.parallelize(sorted(prefixes), max(1, min(tasks, len(prefixes))))
    return spark.createDataFrame(
        rdd.mapPartitions(lambda ps: bucket_mod.listing_rows(location, ps, unsigned)), schema)


def label(meta, objects, min_bytes: int = MIN_BYTES):
    """Join the slice's metadata rows with the listing; one output row per metadata row."""
    from pyspark.sql import functions as F

    keys = objects.filter(F.col("key").isNotNull()).select(F.col("key").alias("object_key"),
                                                           F.col("size").alias("size_bytes"))
    present = objects.select(F.col("prefix").alias("_prefix")).distinct()
    df = (meta.withColumn("_prefix", F.substring("hash", 1, 3))
          .join(keys, "object_key", "left")
          .join(present.withColumn("_prefix_exists", F.lit(True)), "_prefix", "left"))
    reason = (F.when(F.col("size_bytes").isNotNull() & (F.col("size_bytes") < min_bytes), "too_small")
              .when(F.col("size_bytes").isNull() & F.col("_prefix_exists").isNull(), "missing_prefix")
              .when(F.col("size_bytes").isNull(), "missing_object"))
    return df.select("*", F.col("size_bytes").isNotNull().alias("exists"),
                     (F.col("size_bytes") >= min_bytes).alias("usable"), reason.alias(REASON))


def run(lake_root: str, bucket: str, start: str | None = None, end: str | None = None,
        min_bytes: int = MIN_BYTES, unsigned: bool = False) -> dict:
    from pyspark.sql import functions as F

    from deeploc.spark import session

    spark = session("deeploc-availability")
    lake, sl = Lake(lake_root), Slice.of(start, end)
    meta = read_table(spark, lake, "metadata", sl)
    if meta is None:
        log.info("availability: no metadata rows in slice %s", sl.label)
        meta = spark.createDataFrame([], read_table(spark, lake, "metadata").schema) \
            if lake.partitions("metadata") else None
        if meta is None:
            raise FileNotFoundError(f"availability: no metadata table under {lake.path('metadata')}; run metadata first")
    meta = meta.filter(F.col(PARTITION) != "unknown")
    rows_in = meta.count()
    prefixes = [r[0] for r in meta.select(F.substring("hash", 1, 3)).distinct().collect()]
    log.info("availability: %d rows, listing %d prefixes of %s", rows_in, len(prefixes), bucket)
    labelled = label(meta, listing(spark, bucket, prefixes, unsigned), min_bytes)
    return write_slice(lake, "availability", labelled, rows_in, "images", OUT_COLS, REJECT_COLS, sl,
                       extra={"bucket": bucket, "prefixes_listed": len(prefixes), "min_bytes": min_bytes})
