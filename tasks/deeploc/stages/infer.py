"""Infer stage: a trained run + images to predict -> ``predictions/<run>/`` + rejects.

A Spark job: each Python worker loads the model once and predicts whole Arrow batches (resize to
1.5x, fixed centre crop, as in validation). Per photo it writes, for every partitioning and for the
hierarchy, the predicted class and location, the top-k classes with probabilities and the
great-circle distance to the truth.
"""

from __future__ import annotations

import logging

import numpy as np

from deeploc.bucket import Bucket
from deeploc.lake import Lake, record_ledger
from deeploc.predict import cached, distances

log = logging.getLogger(__name__)

KEEP = ["photo_id", "object_key", "latitude", "longitude", "title", "page_url", "license_name"]
REASON = "reject_reason"


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


def _predict(batches, lake_root: str, run_name: str, bucket, top_k: int):
    """mapInPandas body: decode what decodes, predict in one go per Arrow batch."""
    import pandas as pd

    from deeploc import images
    from deeploc.stages.train import load_resized

    pred = cached(lake_root, run_name)
    side = pred.input_size
    for pdf in batches:
        pdf = pdf[KEEP].reset_index(drop=True)
        arrays, ok, reason, detail = [], [], [None] * len(pdf), [None] * len(pdf)
        for i, key in enumerate(pdf["object_key"]):
            try:
                big = load_resized(bucket, key, side)
                off = (big.shape[0] - side) // 2
                arrays.append(big[off:off + side, off:off + side])
                ok.append(i)
            except images.Unreadable as exc:
                reason[i], detail[i] = exc.reason, exc.detail
        out = pdf.copy()
        for o in pred.outputs:
            for suffix in ("class", "lat", "lon", "km", "topk_class", "topk_prob"):
                out[f"{o}_{suffix}"] = pd.Series([None] * len(pdf), dtype=object)
        if ok:
            locs = pred.locations(pred.probabilities(np.stack(arrays)), top_k)
            dist = distances(locs, pdf["latitude"].to_numpy()[ok], pdf["longitude"].to_numpy()[ok])
            for o, v in locs.items():
                for col, vals in (("class", v["class"]), ("lat", v["lat"]), ("lon", v["lon"]), ("km", dist[o])):
                    out.loc[ok, f"{o}_{col}"] = pd.Series(vals.tolist(), index=ok, dtype=object)
                out.loc[ok, f"{o}_topk_class"] = pd.Series([r.tolist() for r in v["topk_class"]], index=ok, dtype=object)
                out.loc[ok, f"{o}_topk_prob"] = pd.Series([r.tolist() for r in v["topk_prob"]], index=ok, dtype=object)
        out[REASON], out["detail"] = reason, detail
        yield out


def run(lake_root: str, bucket: str, run_name: str | None = None, split: str = "test", top_k: int = 5) -> dict:
    from pyspark.sql import functions as F

    from deeploc.spark import session

    lake, bucket = Lake(lake_root), bucket if isinstance(bucket, Bucket) else Bucket.of(bucket)
    if run_name is None:
        run_name = lake.read_json("models/LATEST.json")["run"]
    pred = cached(lake.root, run_name)
    labels = lake.path("partitions", pred.summary["dataset"], "labels.parquet")
    spark = session("deeploc-infer")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
    todo = spark.read.parquet(labels).filter(F.col("split") == split).select(*KEEP)
    rows_in = todo.count()
    log.info("infer: run %s, %d %s images, outputs %s", run_name, rows_in, split, pred.outputs)
    todo = todo.repartition(max(2, spark.sparkContext.defaultParallelism))
    root = lake.root
    labelled = todo.mapInPandas(lambda it: _predict(it, root, run_name, bucket, top_k), _schema(pred.outputs)).cache()

    out, rej = lake.path("predictions", run_name), lake.path("rejects", "infer", run_name)
    tmp_out, tmp_rej = lake.temp_beside(out), lake.temp_beside(rej)
    labelled.filter(F.col(REASON).isNull()).drop(REASON, "detail").write.parquet(tmp_out)
    labelled.filter(F.col(REASON).isNotNull()).select("photo_id", "object_key", REASON, "detail").write.parquet(tmp_rej)
    rejects = {r[REASON]: r["n"] for r in labelled.filter(F.col(REASON).isNotNull())
               .groupBy(REASON).agg(F.count("*").alias("n")).collect()}
    rows_out = spark.read.parquet(tmp_out).count()
    labelled.unpersist()
    ledger = record_ledger(lake, "infer", run_name, rows_in, rows_out, rejects, split=split)
    lake.swap_in(tmp_out, out)
    lake.swap_in(tmp_rej, rej)
    return ledger
