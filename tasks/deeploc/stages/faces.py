"""Faces stage: ``images/`` + image bytes -> ``faces/`` (face ratio per usable image) + rejects.

The OpenCV Haar cascade runs in ``mapInPandas`` batches (the cascade is loaded once per Python
worker). Images that do not decode are rejected as ``undecodable`` (or ``too_many_pixels``) with the
decoder's message, never a crashed task. The report's ``removal`` image set is a filter on
``face_ratio`` (``tables.removal_filter``); both image sets stay available downstream.
"""

from __future__ import annotations

import logging

from deeploc.sources.bucket import Bucket
from deeploc.storage.lake import Lake
from deeploc.storage.slice_io import read_slice, write_slice
from deeploc.storage.slices import Slice
from deeploc.storage.tables import FACES, FACES_REJECTS, REASON

log = logging.getLogger(__name__)


def _detect(batches, bucket: Bucket):
    """mapInPandas body: for each row, read the object, decode, measure faces."""
    import pandas as pd

    from deeploc.sources import facedetect, images

    def measure(rgb):
        ratio, n = facedetect.face_ratio(rgb)
        return rgb.shape[1], rgb.shape[0], n, ratio

    for pdf in batches:
        found, reasons, details = images.read_each(bucket, pdf["object_key"], measure)
        cols = list(zip(*[f if f is not None else (None,) * 4 for f in found])) or [()] * 4
        yield pdf.assign(width=pd.array(cols[0], dtype="Int32"), height=pd.array(cols[1], dtype="Int32"),
                         face_count=pd.array(cols[2], dtype="Int32"), face_ratio=pd.array(cols[3], dtype="Float64"),
                         **{REASON: reasons}, detail=details)


def transform(images_df, bucket: Bucket):
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    schema = StructType(images_df.schema.fields + [
        StructField("width", IntegerType()), StructField("height", IntegerType()),
        StructField("face_count", IntegerType()), StructField("face_ratio", DoubleType()),
        StructField(REASON, StringType()), StructField("detail", StringType())])
    return images_df.mapInPandas(lambda it: _detect(it, bucket), schema)


def run(lake: str, bucket: Bucket, start: str | None = None, end: str | None = None) -> dict:
    """Measure faces in the slice's usable images; write its ``faces/`` months and rejects; return the ledger."""
    from deeploc.spark import session

    spark = session("deeploc-faces")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
    lake, sl = Lake(lake), Slice.of(start, end)
    imgs, rows_in, snapshot = read_slice(spark, lake, "images", sl)
    # Spread the decoding over every core even when the slice is a single small file.
    imgs = imgs.repartition(max(2, spark.sparkContext.defaultParallelism * 2))
    log.info("faces: %d usable images in slice %s", rows_in, sl.name)
    return write_slice(lake, "faces", transform(imgs, bucket), rows_in, "faces", FACES, FACES_REJECTS, sl, snapshot)
