"""Infer stage: a trained run + images to predict -> ``predictions/<run>/`` + rejects.

A Spark job: each Python worker loads the model once and predicts whole Arrow batches (resize to
1.5x, fixed centre crop, as in validation). Per photo it writes, for every partitioning and for the
hierarchy, the predicted class and location, the top-k classes with probabilities and the
great-circle distance to the truth.
"""

from __future__ import annotations

import logging

import numpy as np

from deeploc import commit, ledger, runs
from deeploc.bucket import Bucket
from deeploc.lake import Lake
from deeploc.predict import cached, distances
from deeploc.tables import REASON

log = logging.getLogger(__name__)

KEEP = ["photo_id", "object_key", "latitude", "longitude", "title", "page_url", "license_name"]


def _schema(outputs: list[str]):
    from pyspark.sql.types import ArrayType, DoubleType, IntegerType, LongType, StringType, StructField, StructType

    fields = [StructField("photo_id", LongType()), StructField("object_key", StringType()),
              StructField("latitude", DoubleType()), StructField("longitude", DoubleType()),
              StructField("title", StringType()), StructField("page_url", StringType()),
              StructField("license_name", StringType())]
    for o in outputs:
        fields += [StructField(f"{o}_class", IntegerType()), StructField(f"{o}_lat", DoubleType()),
                   StructField(f"{o}_lon", DoubleType()), StructField(f"{o}_km", DoubleType()),
                   StructField(f"{o}_topk_class", ArrayType(IntegerType())),
                   StructField(f"{o}_topk_prob", ArrayType(DoubleType()))]
    return StructType(fields + [StructField(REASON, StringType()), StructField("detail", StringType())])


def _predict(batches, lake_root: str, run: str, bucket: Bucket, top_k: int):
    """mapInPandas body: decode what decodes, predict in one go per Arrow batch."""
    import pandas as pd

    from deeploc import images

    pred = cached(lake_root, run)
    side = pred.input_size
    for pdf in batches:
        pdf = pdf[KEEP].reset_index(drop=True)
        arrays, reason, detail = images.read_each(bucket, pdf["object_key"], lambda rgb: images.model_input(rgb, side))
        ok = [i for i, a in enumerate(arrays) if a is not None]
        out = pdf.copy()
        for o in pred.outputs:
            for suffix in ("class", "lat", "lon", "km", "topk_class", "topk_prob"):
                out[f"{o}_{suffix}"] = pd.Series([None] * len(pdf), dtype=object)
        if ok:
            locs = pred.locations(pred.probabilities(np.stack([arrays[i] for i in ok])), top_k)
            dist = distances(locs, pdf["latitude"].to_numpy()[ok], pdf["longitude"].to_numpy()[ok])
            for o, v in locs.items():
                for col, vals in (("class", v["class"]), ("lat", v["lat"]), ("lon", v["lon"]), ("km", dist[o])):
                    out.loc[ok, f"{o}_{col}"] = pd.Series(vals.tolist(), index=ok, dtype=object)
                out.loc[ok, f"{o}_topk_class"] = pd.Series([r.tolist() for r in v["topk_class"]], index=ok, dtype=object)
                out.loc[ok, f"{o}_topk_prob"] = pd.Series([r.tolist() for r in v["topk_prob"]], index=ok, dtype=object)
        out[REASON], out["detail"] = reason, detail
        yield out


def run(lake: str, bucket: Bucket, run: str | None = None, split: str = "test", top_k: int = 5) -> dict:
    """Predict the ``split`` photos of the run's image set; publish ``predictions/<run>/``; return the ledger."""
    from pyspark.sql import functions as F

    from deeploc.spark import session

    lake_ = Lake(lake)
    run = runs.resolve(lake_, run)
    pred = cached(lake_.root, run)
    photos = lake_.path("partitionings", pred.summary["image_set"], "photos.parquet")
    spark = session("deeploc-infer")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
    todo = spark.read.parquet(photos).filter(F.col("split") == split).select(*KEEP)
    rows_in = todo.count()
    log.info("infer: run %s, %d %s images, outputs %s", run, rows_in, split, pred.outputs)
    todo = todo.repartition(max(2, spark.sparkContext.defaultParallelism))
    root = lake_.root
    labelled = todo.mapInPandas(lambda it: _predict(it, root, run, bucket, top_k), _schema(pred.outputs)).cache()

    staged_out, staged_rej = commit.new_staging(lake_, "predictions"), commit.new_staging(lake_, "rejects/infer")
    try:
        labelled.filter(F.col(REASON).isNull()).drop(REASON, "detail").write.parquet(staged_out)
        labelled.filter(F.col(REASON).isNotNull()).select("photo_id", "object_key", REASON, "detail").write.parquet(staged_rej)
        rejects = {r[REASON]: r["count"] for r in labelled.filter(F.col(REASON).isNotNull()).groupBy(REASON).count().collect()}
        rows_out = ledger.footer_rows(lake_, lake_.files(staged_out, ".parquet"))
        entry = ledger.record(lake_, "infer", run, rows_in, rows_out, rejects, split=split)
    except BaseException:
        lake_.delete(staged_out)
        lake_.delete(staged_rej)
        raise
    finally:
        labelled.unpersist()
    commit.publish(lake_, f"predictions/{run}", [(staged_out, lake_.path("predictions", run))])
    commit.publish(lake_, f"rejects/infer/{run}", [(staged_rej, lake_.path("rejects", "infer", run))])
    return entry
