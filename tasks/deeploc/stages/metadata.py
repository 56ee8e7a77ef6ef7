"""Metadata stage: one upload-time slice of ``parsed/`` -> ``metadata/`` (clean geotagged photos with
their object key in the image bucket) + rejects.

Reads only the slice's months of the parsed table (``deeploc parse`` read the raw files). ``transform``
is a pure DataFrame function, unit-tested on tiny inputs; everything is Spark built-ins, no Python per row.
Rejects: ``video``, ``bad_marker``, ``no_download_url``, ``hash_mismatch`` (the given hash is not the one
derived from the download URL by the parse step), ``no_coordinates``, ``bad_coordinates``, ``duplicate_id`` (a later copy of
an id, as decided over the whole parsed table by the parse step).
"""

from __future__ import annotations

import logging

from deeploc.sources import yfcc
from deeploc.storage import commit
from deeploc.storage.lake import Lake
from deeploc.storage.slice_io import read_slice, write_slice
from deeploc.storage.slices import Slice
from deeploc.storage.tables import METADATA, METADATA_REJECTS, MONTH, REASON

log = logging.getLogger(__name__)
DUPLICATES = "duplicates"   # written by the parse step: the repeated photo ids and their first occurrence


def object_key(hash_col):
    """``data/images/<h[0:3]>/<h[3:6]>/<h>.jpg`` (``yfcc.object_key``) with built-ins."""
    from pyspark.sql import functions as F

    return F.concat(F.lit(yfcc.IMAGE_PREFIX + "/"), F.substring(hash_col, 1, 3), F.lit("/"),
                    F.substring(hash_col, 4, 3), F.lit("/"), hash_col, F.lit(".jpg"))


def transform(parsed, duplicates):
    """Parsed rows (+ ``upload_month``) and the repeated ids (photo_id, first_file, first_position) ->
    the same rows with ``hash``, ``object_key`` and a ``reject_reason``."""
    from pyspark.sql import functions as F

    coords_ok = (F.col("latitude").between(-90.0, 90.0) & F.col("longitude").between(-180.0, 180.0)
                 & ~F.isnan("latitude") & ~F.isnan("longitude"))
    later_copy = F.col("first_file").isNotNull() & ((F.col("source_file") != F.col("first_file"))
                                                    | (F.col("position") != F.col("first_position")))
    reason = (F.when(F.col("marker") == 1, "video")
              .when(F.col("marker").isNull() | (F.col("marker") != 0), "bad_marker")
              .when(F.col("hash").isNull(), "no_download_url")
              .when(F.col("given_hash").isNotNull() & (F.col("given_hash") != F.col("hash")), "hash_mismatch")
              .when(~F.col("coordinates_given"), "no_coordinates")
              .when(~F.coalesce(coords_ok, F.lit(False)), "bad_coordinates")
              .when(later_copy, "duplicate_id"))
    return (parsed.join(F.broadcast(duplicates), "photo_id", "left")
            .withColumn("hash", F.col("url_hash"))
            .withColumn("object_key", F.when(F.col("hash").isNotNull(), object_key(F.col("hash"))))
            .withColumn(REASON, reason))


def run(lake: str, start: str | None = None, end: str | None = None) -> dict:
    """Write the slice [start, end) of ``metadata/`` and its rejects; return the ledger."""
    from deeploc.spark import session

    spark = session("deeploc-metadata")
    lake_, sl = Lake(lake), Slice.of(start, end)
    parsed, rows_in, snapshot = read_slice(spark, lake_, "parsed", sl)
    duplicates = spark.read.parquet(*lake_.files(commit.require(lake_, DUPLICATES, "parse"), ".parquet"))
    log.info("metadata: slice %s, %d parsed rows", sl.name, rows_in)
    # No intermediate table: the rules are cheap to apply twice (once per written table).
    return write_slice(lake_, "metadata", transform(parsed.drop("source"), duplicates).select(
        *METADATA, *[c for c in METADATA_REJECTS if c not in METADATA], REASON, MONTH),
        rows_in, "metadata", METADATA, METADATA_REJECTS, sl, snapshot, materialize=False)
