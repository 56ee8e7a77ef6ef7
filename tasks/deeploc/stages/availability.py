"""Availability stage: ``metadata/`` + a listing of the image bucket -> ``images/`` + rejects.

Instead of one request per image, the stage lists the bucket by three-character hash prefix (only the
prefixes its slice needs, in parallel Spark tasks) and joins. Rejects: ``missing_object``,
``missing_prefix`` (the whole prefix folder is absent, as ``data/images/ac8/`` is in the real bucket),
``too_small`` (empty files and sub-KB placeholders carry no picture).

Which check (``--check auto``): listing a prefix costs ceil(objects in it / 1,000) requests, one HEAD
per image costs one. On S3, a slice whose keys are fewer than ``prefixes x pages per prefix`` is
checked by HEAD (plus one 1-key listing per prefix that holds a missing key, to tell a missing object
from a missing prefix); larger slices are listed. ``--objects-per-prefix`` is the estimate (the real
bucket: ~100M objects / 4,096 prefixes = 24,400). A local folder is always listed: it has no request cost.
"""

from __future__ import annotations

import logging
import math
import re
import time

from deeploc.sources.bucket import Bucket
from deeploc.storage.lake import Lake
from deeploc.storage.slice_io import read_slice, write_slice
from deeploc.storage.slices import Slice
from deeploc.storage.tables import IMAGES, IMAGES_REJECTS, REASON

log = logging.getLogger(__name__)

MIN_BYTES = 1024
OBJECTS_PER_PREFIX = 24_400
CHECKS = ("auto", "list", "head")
LISTING_MAX_AGE_HOURS = 24 * 30  # the multimedia-commons bucket does not change


def choose_check(bucket: Bucket, keys: int, prefixes: int, objects_per_prefix: int = OBJECTS_PER_PREFIX) -> str:
    """The documented rule (module docstring): HEAD when it needs fewer requests than listing."""
    if not bucket.is_s3:
        return "list"
    return "head" if keys < prefixes * math.ceil(objects_per_prefix / 1000) else "list"


def _schema():
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    return StructType([StructField("prefix", StringType(), False), StructField("key", StringType(), True),
                       StructField("size", LongType(), True)])


def _task_count(items: int, per_task: int, most: int = 64) -> int:
    """Enough tasks to spread the requests, few enough that each is worth its client set-up."""
    return max(1, min(most, math.ceil(items / per_task)))


def listing(spark, bucket: Bucket, prefixes: list[str]):
    """DataFrame (prefix, key, size) of the bucket under the given prefixes; see ``Bucket.listing_rows``."""
    rdd = spark.sparkContext.parallelize(sorted(prefixes), _task_count(len(prefixes), 32))
    return spark.createDataFrame(rdd.mapPartitions(bucket.listing_rows), _schema())


def _cache_dir(lake: Lake, bucket: Bucket) -> str:
    return lake.path("_listing", re.sub(r"[^A-Za-z0-9_.-]+", "_", bucket.location).strip("_"))


def _list_into_cache(bucket: Bucket, lake: Lake, cache: str, prefixes):
    """Spark task body: list each prefix and write its rows (as ``Bucket.listing_rows``) as one file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for p in prefixes:
        rows = list(bucket.listing_rows([p]))
        table = pa.table({"prefix": pa.array([r[0] for r in rows], pa.string()),
                          "key": pa.array([r[1] for r in rows], pa.string()),
                          "size": pa.array([r[2] for r in rows], pa.int64())})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        lake.write_bytes(f"{cache}/{p}.parquet", sink.getvalue().to_pybytes())
        yield p


def cached_listing(spark, lake: Lake, bucket: Bucket, prefixes: list[str], max_age_hours: float):
    """(DataFrame (prefix, key, size) for ``prefixes`` from the lake's listing cache, prefixes listed now)."""
    cache = _cache_dir(lake, bucket)
    oldest = time.time() - max_age_hours * 3600
    stale = [p for p in prefixes if (lake.mtime(f"{cache}/{p}.parquet") or 0) < oldest]
    if stale:
        rdd = spark.sparkContext.parallelize(sorted(stale), _task_count(len(stale), 32))
        rdd.mapPartitions(lambda ps: _list_into_cache(bucket, lake, cache, ps)).count()
    if not prefixes:
        return spark.createDataFrame([], _schema()), 0
    return spark.read.schema(_schema()).parquet(*[f"{cache}/{p}.parquet" for p in prefixes]), len(stale)


def _head_rows(bucket: Bucket, keys):
    """Per-object check, same rows as a listing: found keys, and a marker for each existing prefix."""
    keys = list(keys)
    sizes = {k: bucket.head(k) for k in keys}
    missing_prefixes = {k.split("/")[2] for k, size in sizes.items() if size is None}
    present = {k.split("/")[2] for k, size in sizes.items() if size is not None}
    present |= {p for p in missing_prefixes - present if bucket.list_prefix_exists(p)}
    for p in present:
        yield (p, None, None)
    for k, size in sizes.items():
        if size is not None:
            yield (k.split("/")[2], k, size)


def heads(spark, bucket: Bucket, keys: list[str]):
    """DataFrame (prefix, key, size) from one HEAD per key (markers deduplicated across tasks)."""
    rdd = spark.sparkContext.parallelize(sorted(keys), _task_count(len(keys), 64))
    return spark.createDataFrame(rdd.mapPartitions(lambda ks: _head_rows(bucket, ks)), _schema()).dropDuplicates()


def transform(meta, objects, min_bytes: int = MIN_BYTES):
    """Join the slice's metadata rows with the listing (prefix, key, size); one row per metadata row."""
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


def run(lake: str, bucket: Bucket, start: str | None = None, end: str | None = None,
        min_bytes: int = MIN_BYTES, check: str = "auto", objects_per_prefix: int = OBJECTS_PER_PREFIX,
        listing_max_age: float = LISTING_MAX_AGE_HOURS) -> dict:
    """Check the slice's objects in the bucket; write its ``images/`` months and rejects; return the ledger.
    ``listing_max_age``: hours a kept S3 listing of a prefix is reused."""
    from pyspark.sql import functions as F

    from deeploc.spark import session

    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    spark = session("deeploc-availability")
    lake, sl = Lake(lake), Slice.of(start, end)
    meta, rows_in, snapshot = read_slice(spark, lake, "metadata", sl)
    prefixes = [r[0] for r in meta.select(F.substring("hash", 1, 3)).distinct().collect()]
    if check == "auto":
        check = choose_check(bucket, rows_in, len(prefixes), objects_per_prefix)
    log.info("availability: %d rows, %s over %d prefixes of %s", rows_in, check, len(prefixes), bucket.location)
    listed_now = len(prefixes)
    if check == "list" and bucket.is_s3:
        objects, listed_now = cached_listing(spark, lake, bucket, prefixes, listing_max_age)
    elif check == "list":
        objects = listing(spark, bucket, prefixes)
    else:
        objects = heads(spark, bucket, [r[0] for r in meta.select("object_key").distinct().collect()])
    # The join reads the objects twice (keys, and prefixes present): cached, each request is made once.
    objects = objects.cache()
    try:
        return write_slice(lake, "availability", transform(meta, objects, min_bytes), rows_in, "images", IMAGES,
                           IMAGES_REJECTS, sl, snapshot, bucket=bucket.location, check=check, prefixes=len(prefixes),
                           min_bytes=min_bytes, prefixes_listed_now=listed_now if check == "list" else 0)
    finally:
        objects.unpersist()
