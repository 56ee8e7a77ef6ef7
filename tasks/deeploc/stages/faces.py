"""Faces stage: ``images/`` + image bytes -> ``faces/`` (face ratio per usable image) + rejects.

The OpenCV Haar cascade runs in ``mapInPandas`` batches (the cascade is loaded once per Python
worker). Images that do not decode are rejected as ``undecodable`` (or ``too_many_pixels``) with the
decoder's message, never a crashed task. The report's ``removal`` data set is a filter on
``face_ratio`` (see ``removal_filter``); both data sets stay available downstream.
"""

from __future__ import annotations

import logging

from deeploc.bucket import Bucket
from deeploc.lake import Lake, Slice
from deeploc.sliced_write import REASON, read_slice, write_slice
from deeploc.stages.availability import OUT_COLS as IMAGE_COLS

log = logging.getLogger(__name__)

OUT_COLS = IMAGE_COLS + ["width", "height", "face_count", "face_ratio"]
REJECT_COLS = ["photo_id", "object_key", "detail"]
REMOVAL_THRESHOLD = 0.035


def removal_filter(threshold: float = REMOVAL_THRESHOLD) -> str:
    """SQL predicate keeping the images of the report's ``removal`` data set."""
    return f"face_ratio <= {float(threshold)!r}"


def _detect(batches, bucket: Bucket):
    """mapInPandas body: for each row, read the object, decode, measure faces."""
    import pandas as pd

    from deeploc import facedetect, images

    for pdf in batches:
        width, height, count, ratio, reason, detail = [], [], [], [], [], []
        for key in pdf["object_key"]:
            try:
                rgb = images.read_rgb(bucket, key)
                r, n = facedetect.face_ratio(rgb)
                vals = (rgb.shape[1], rgb.shape[0], n, r, None, None)
            except images.Unreadable as exc:
                vals = (None, None, None, None, exc.reason, exc.detail)
            for col, v in zip((width, height, count, ratio, reason, detail), vals):
                col.append(v)
        yield pdf.assign(width=pd.array(width, dtype="Int32"), height=pd.array(height, dtype="Int32"),
                         face_count=pd.array(count, dtype="Int32"), face_ratio=pd.array(ratio, dtype="Float64"),
                         **{REASON: reason}, detail=detail)


def label(images_df, bucket: Bucket):
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    schema = StructType(images_df.schema.fields + [
        StructField("width", IntegerType()), StructField("height", IntegerType()),
        StructField("face_count", IntegerType()), StructField("face_ratio", DoubleType()),
        StructField(REASON, StringType()), StructField("detail", StringType())])
    return images_df.mapInPandas(lambda it: _detect(it, bucket), schema)


def run(lake_root: str, bucket: str | Bucket, start: str | None = None, end: str | None = None) -> dict:
    from deeploc.spark import session

    bucket = bucket if isinstance(bucket, Bucket) else Bucket.of(bucket)
    spark = session("deeploc-faces")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
    lake, sl = Lake(lake_root), Slice.of(start, end)
    imgs, rows_in = read_slice(spark, lake, "images", sl, upstream="availability")
    # Spread the decoding over every core even when the slice is a single small file.
    imgs = imgs.repartition(max(2, spark.sparkContext.defaultParallelism * 2))
    log.info("faces: %d usable images in slice %s", rows_in, sl.label)
    return write_slice(lake, "faces", label(imgs, bucket), rows_in, "faces", OUT_COLS, REJECT_COLS, sl)
