"""Metadata stage: YFCC100M metadata files -> ``metadata/`` (clean geotagged photos) + rejects.

Extract reads lines (bz2 / gzip / plain, local or s3:// on EMR); ``label`` is a pure DataFrame
transform (unit-tested on tiny inputs); load writes one upload-time slice with a verified ledger.
Everything is Spark built-ins: no Python runs per row.
"""

from __future__ import annotations

import logging

from deeploc import yfcc
from deeploc.lake import PARTITION, UNKNOWN, Lake, Slice
from deeploc.sliced_write import REASON, write_slice

log = logging.getLogger(__name__)

OUT_COLS = ["photo_id", "hash", "object_key", "longitude", "latitude", "accuracy", "download_url",
            "upload_time", "date_taken", "title", "license_name", "license_url", "page_url"]
REJECT_COLS = ["raw", "source_file", "photo_id"]


def read_lines(spark, paths: list[str]):
    """Every input line with its file and a position that orders lines within the read."""
    from pyspark.sql import functions as F

    return (spark.read.text(paths)
            .select(F.make_valid_utf8("value").alias("raw"),  # bad bytes in user text must not fail a row
                    F.input_file_name().alias("source_file"),
                    F.monotonically_increasing_id().alias("pos")))


def detect_layout(lines, forced: int | None = None, sample: int = 1000) -> int:
    """25 or 23 columns: forced, or the more common of the two field counts in the first lines."""
    from pyspark.sql import functions as F

    if forced:
        if forced not in yfcc.LAYOUTS:
            raise ValueError(f"unknown layout {forced}: use 25 (official) or 23 (variant)")
        return forced
    counts = {r["n"]: r["c"] for r in lines.limit(sample)
              .select(F.size(F.split("raw", "\t", -1)).alias("n")).groupBy("n").agg(F.count("*").alias("c")).collect()}
    seen = {n: counts.get(n, 0) for n in yfcc.LAYOUTS}
    if not any(seen.values()):
        raise ValueError(f"no line has 25 or 23 tab-separated fields (field counts seen: {sorted(counts)[:10]})")
    return max(seen, key=lambda n: (seen[n], n))


def derived_hash(url_col):
    """The bucket's file stem with built-ins: md5 hex, then drop the leading zero of every byte pair."""
    from pyspark.sql import functions as F

    spaced = F.regexp_replace(F.md5(url_col), "(..)", " $1")       # " 0a 3f ..."
    return F.regexp_replace(F.regexp_replace(spaced, " 0", " "), " ", "")


def label(lines, layout: int, sl: Slice):
    """Parse and label the lines of slice ``sl`` (plus undated lines): one output row per input row."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cols = yfcc.LAYOUTS[layout]
    fields = F.split("raw", "\t", -1)
    f = {name: F.get(fields, i) for i, name in enumerate(cols)}  # NULL past the end, not an error
    lo, hi = sl.bounds_epoch()

    df = lines.select(
        "raw", "source_file", "pos",
        F.size(fields).alias("n_fields"),
        f["photo_id"].try_cast("bigint").alias("photo_id"),
        (f["hash"] if "hash" in f else F.lit(None).cast("string")).alias("given_hash"),
        f["date_uploaded"].try_cast("bigint").alias("upload_epoch"),
        f["longitude"].alias("lon_raw"), f["latitude"].alias("lat_raw"),
        f["longitude"].try_cast("double").alias("longitude"),
        f["latitude"].try_cast("double").alias("latitude"),
        f["accuracy"].try_cast("int").alias("accuracy"),
        f["download_url"].alias("download_url"), f["marker"].alias("marker"),
        f["date_taken"].alias("date_taken"), f["title"].alias("title"),
        f["license_name"].alias("license_name"), f["license_url"].alias("license_url"),
        f["page_url"].alias("page_url"),
        (f["line"].try_cast("bigint") if "line" in f else F.lit(None).cast("bigint")).alias("line_no"),
    )
    bad_fields = F.col("n_fields") != layout
    dated = ~bad_fields & F.col("upload_epoch").isNotNull()
    df = df.withColumn("hash", F.when(F.length("download_url") > 0, derived_hash(F.col("download_url"))))

    no_coords = (F.coalesce(F.length("lon_raw"), F.lit(0)) == 0) & (F.coalesce(F.length("lat_raw"), F.lit(0)) == 0)
    coords_ok = (F.col("latitude").between(-90.0, 90.0) & F.col("longitude").between(-180.0, 180.0)
                 & ~F.isnan("latitude") & ~F.isnan("longitude"))
    reason = (F.when(bad_fields, "bad_field_count")
              .when(F.col("photo_id").isNull(), "bad_photo_id")
              .when(F.col("upload_epoch").isNull(), "bad_upload_time")
              .when(F.col("marker") == "1", "video")
              .when(F.col("marker") != "0", "bad_marker")
              .when(F.col("hash").isNull(), "no_download_url")
              .when(F.col("given_hash").isNotNull() & (F.col("given_hash") != F.col("hash")), "hash_mismatch")
              .when(no_coords, "no_coordinates")
              .when(~F.coalesce(coords_ok, F.lit(False)), "bad_coordinates"))
    df = df.withColumn(REASON, reason)

    # Duplicate ids: among otherwise clean rows of the *whole input* (the first occurrence may sit in
    # another slice), the first by file and line keeps the id; so slicing happens only afterwards.
    first = Window.partitionBy("photo_id").orderBy("source_file", "line_no", "pos")
    df = df.withColumn("_rank", F.when(F.col(REASON).isNull(), F.row_number().over(first)))
    df = df.withColumn(REASON, F.when(F.col("_rank") > 1, F.lit("duplicate_id")).otherwise(F.col(REASON)))
    # This run's rows: those uploaded in the slice, and every undated row (they live in ``unknown``).
    df = df.filter(~dated | ((F.col("upload_epoch") >= lo) & (F.col("upload_epoch") < hi)))

    upload_time = F.timestamp_seconds("upload_epoch")
    return df.select(
        "*",
        F.when(F.col("hash").isNotNull(), F.concat(
            F.lit(yfcc.IMAGE_PREFIX + "/"), F.substring("hash", 1, 3), F.lit("/"),
            F.substring("hash", 4, 3), F.lit("/"), F.col("hash"), F.lit(".jpg"))).alias("object_key"),
        upload_time.alias("upload_time"),
        F.when(dated, F.date_format(upload_time, "yyyy-MM")).otherwise(F.lit(UNKNOWN)).alias(PARTITION),
    )


def run(inputs: list[str], lake_root: str, start: str | None = None, end: str | None = None,
        layout: int | None = None) -> dict:
    """Read ``inputs``, write the slice [start, end) of ``metadata/`` and its rejects; return the ledger."""
    from deeploc.spark import session

    if not inputs:
        raise ValueError("metadata: no input files given")
    spark = session("deeploc-metadata")
    lake, sl = Lake(lake_root), Slice.of(start, end)
    lines = read_lines(spark, inputs)
    n_layout = detect_layout(lines, layout)
    log.info("metadata: %d input path(s), %d-column layout, slice %s", len(inputs), n_layout, sl.label)
    # Rows in: the slice's lines plus undated ones (labelling is 1:1 per line), counted on the
    # cached rows inside write_slice so the input is decompressed and shuffled only once.
    return write_slice(lake, "metadata", label(lines, n_layout, sl), None, "metadata", OUT_COLS, REJECT_COLS, sl,
                       with_unknown=True, extra={"layout": n_layout, "inputs": inputs})
