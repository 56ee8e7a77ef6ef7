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
IN_SLICE = "_in_slice"


def read_lines(spark, paths: list[str], split_bytes: int = 64 << 20):
    """Every input line with its file and a position that orders lines within the file; decoded by
    libbz2 / zlib in the tasks (``line_source``), split like Hadoop splits text."""
    from pyspark.sql import functions as F

    from deeploc.line_source import read_lines as lines_of

    return lines_of(spark, paths, split_bytes).select(
        F.make_valid_utf8(F.col("raw").cast("string")).alias("raw"),  # bad bytes in user text must not fail a row
        "source_file", "pos")


def detect_layout(paths: list[str], forced: int | None = None, sample: int = 1000) -> int:
    """25 or 23 columns: forced, or the more common of the two field counts in the first lines."""
    from collections import Counter

    from deeploc.line_source import head

    if forced:
        if forced not in yfcc.LAYOUTS:
            raise ValueError(f"unknown layout {forced}: use 25 (official) or 23 (variant)")
        return forced
    counts = Counter(line.count(b"\t") + 1 for line in head(paths, sample))
    seen = {n: counts.get(n, 0) for n in yfcc.LAYOUTS}
    if not any(seen.values()):
        raise ValueError(f"no line has 25 or 23 tab-separated fields (field counts seen: {sorted(counts)[:10]})")
    return max(seen, key=lambda n: (seen[n], n))


def derived_hash(url_col):
    """The bucket's file stem with built-ins: md5 hex, then drop the leading zero of every byte pair."""
    from pyspark.sql import functions as F

    # One pass over the 32 hex digits, two at a time: a pair "0x" becomes "x", any other pair stays
    # (an unmatched group adds nothing). Matches are always two characters, so they stay aligned.
    return F.regexp_replace(F.md5(url_col), "0(.)|(..)", "$1$2")


def number(text, kind: str):
    """``text`` as a number, NULL where it is not one. Empty fields (every photo without a geotag)
    are nulled first: a failed cast costs an exception, which would dominate the stage."""
    from pyspark.sql import functions as F

    return F.nullif(text, F.lit("")).try_cast(kind)


def label(lines, layout: int, sl: Slice):
    """Parse and label the lines of slice ``sl`` (plus undated lines): one row per input row, all
    reasons but ``duplicate_id`` (see ``mark_duplicates``), plus the keys of other slices' clean rows."""
    from pyspark.sql import functions as F

    cols = yfcc.LAYOUTS[layout]
    fields = F.split("raw", "\t", -1)
    f = {name: F.get(fields, i) for i, name in enumerate(cols)}  # NULL past the end, not an error
    lo, hi = sl.bounds_epoch()

    df = lines.select(
        "raw", "source_file", "pos",
        F.size(fields).alias("n_fields"),
        number(f["photo_id"], "bigint").alias("photo_id"),
        (f["hash"] if "hash" in f else F.lit(None).cast("string")).alias("given_hash"),
        number(f["date_uploaded"], "bigint").alias("upload_epoch"),
        f["longitude"].alias("lon_raw"), f["latitude"].alias("lat_raw"),
        number(f["longitude"], "double").alias("longitude"),
        number(f["latitude"], "double").alias("latitude"),
        number(f["accuracy"], "int").alias("accuracy"),
        f["download_url"].alias("download_url"), f["marker"].alias("marker"),
        f["date_taken"].alias("date_taken"), f["title"].alias("title"),
        f["license_name"].alias("license_name"), f["license_url"].alias("license_url"),
        f["page_url"].alias("page_url"),
        (number(f["line"], "bigint") if "line" in f else F.lit(None).cast("bigint")).alias("line_no"),
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

    # This run's rows: those uploaded in the slice, and every undated row (they live in ``unknown``).
    # Rows of other slices stay, stripped to their keys: ``mark_duplicates`` needs the clean ones (the
    # first occurrence of an id may sit in another slice) and drops the rest. Not filtered here: the
    # optimizer would push the filter under the projection and evaluate the parse twice per row.
    in_slice = ~dated | ((F.col("upload_epoch") >= lo) & (F.col("upload_epoch") < hi))
    df = df.withColumn(IN_SLICE, in_slice)

    upload_time = F.timestamp_seconds("upload_epoch")
    payload = {
        "raw": F.col("raw"),
        "object_key": F.when(F.col("hash").isNotNull(), F.concat(
            F.lit(yfcc.IMAGE_PREFIX + "/"), F.substring("hash", 1, 3), F.lit("/"),
            F.substring("hash", 4, 3), F.lit("/"), F.col("hash"), F.lit(".jpg"))),
        "upload_time": upload_time,
        PARTITION: F.when(dated, F.date_format(upload_time, "yyyy-MM")).otherwise(F.lit(UNKNOWN)),
        **{c: F.col(c) for c in OUT_COLS if c not in ("photo_id", "object_key", "upload_time")},
    }
    return df.select("photo_id", "source_file", "line_no", "pos", REASON, IN_SLICE,
                     *(F.when(F.col(IN_SLICE), col).alias(name) for name, col in payload.items()))


def mark_duplicates(rows, broadcast_below: int = 2_000_000):
    """Among clean rows of the whole input, the first by file and line keeps an id; the others are
    rejected as ``duplicate_id``. Returns this slice's rows only.

    The repeated ids are found from the keys alone; real inputs have few or none, so the join is
    skipped or broadcast, and the rows are never shuffled for it.
    """
    from pyspark.sql import functions as F

    order = F.struct("source_file", "line_no", "pos")
    repeated = (rows.filter(F.col(REASON).isNull()).groupBy("photo_id")
                .agg(F.count("*").alias("_n"), F.min(order).alias("_first")).filter("_n > 1").drop("_n"))
    n = repeated.count()
    mine = rows.filter(IN_SLICE).drop(IN_SLICE)
    if n == 0:
        return mine
    repeated = F.broadcast(repeated) if n <= broadcast_below else repeated
    loser = F.col(REASON).isNull() & F.col("_first").isNotNull() & (order != F.col("_first"))
    return (mine.join(repeated, "photo_id", "left")
            .withColumn(REASON, F.when(loser, F.lit("duplicate_id")).otherwise(F.col(REASON))).drop("_first"))


def run(inputs: list[str], lake_root: str, start: str | None = None, end: str | None = None,
        layout: int | None = None, split_mb: int = 64) -> dict:
    """Read ``inputs`` (files, folders or globs), write the slice [start, end) of ``metadata/`` and its
    rejects; return the ledger."""
    from deeploc.spark import session

    if not inputs:
        raise ValueError("metadata: no input files given")
    spark = session("deeploc-metadata")
    lake, sl = Lake(lake_root), Slice.of(start, end)
    n_layout = detect_layout(inputs, layout)
    lines = read_lines(spark, inputs, split_mb << 20)
    log.info("metadata: %d input path(s), %d-column layout, slice %s", len(inputs), n_layout, sl.label)
    # Rows in: the slice's lines plus undated ones (labelling is 1:1 per line), counted on the
    # materialised rows inside write_slice so the input is decompressed only once.
    return write_slice(lake, "metadata", label(lines, n_layout, sl), None, "metadata", OUT_COLS, REJECT_COLS, sl,
                       with_unknown=True, extra={"layout": n_layout, "inputs": inputs}, finish=mark_duplicates)
