"""Infer stage: a trained run + photos -> the ``predictions`` table (the run's partition) + rejects.

Which photos: a split of the run's image set (``--split test``), or any set (``--photos``): a Parquet
table with ``object_key`` or ``photo_id`` (and, when known, ``latitude`` / ``longitude``), or a text
file of object keys or photo ids, one per line. Photo ids and keys are looked up in ``faces/`` for
their location and attribution; an id that is not there is rejected (``unknown_photo_id``).

A Spark job: each Python worker loads the model once (the driver never does), reads and decodes the
next batch's images on a thread pool while the network predicts the current one, and limits
TensorFlow's threads to its task's cores. Per photo it writes, for every partitioning and for the
hierarchy, the predicted class and location, the top-k classes with probabilities and the distance to
the truth (null when the truth is unknown).
"""

from __future__ import annotations

import logging
import uuid

import numpy as np

from deeploc.learn.predict import cached, CROPS, distances, outputs_of
from deeploc.sources import images
from deeploc.sources.bucket import Bucket
from deeploc.storage import catalog, commit, ledger, runs
from deeploc.storage.lake import Lake
from deeploc.storage.tables import REASON

log = logging.getLogger(__name__)

# A photo's columns carried into the predictions (from faces/ for photos given by id or key).
KEEP = ["photo_id", "object_key", "latitude", "longitude", "title", "page_url", "license_name", "license_url",
        "user_nickname", "user_nsid"]


def schema(outputs: list[str]):
    from pyspark.sql.types import ArrayType, DoubleType, IntegerType, LongType, StringType, StructField, StructType

    fields = [StructField("photo_id", LongType()), StructField("object_key", StringType()),
              StructField("latitude", DoubleType()), StructField("longitude", DoubleType()),
              *(StructField(c, StringType()) for c in KEEP[4:])]
    for o in outputs:
        fields += [StructField(f"{o}_class", IntegerType()), StructField(f"{o}_lat", DoubleType()),
                   StructField(f"{o}_lon", DoubleType()), StructField(f"{o}_km", DoubleType()),
                   StructField(f"{o}_topk_class", ArrayType(IntegerType())),
                   StructField(f"{o}_topk_prob", ArrayType(DoubleType()))]
    return StructType(fields + [StructField(REASON, StringType()), StructField("detail", StringType())])


def _worker_setup(threads: int) -> None:
    """Once per Python worker: TensorFlow's thread pools sized to this task's cores, GPU memory grown as
    needed (several workers may share a GPU only if memory allows; the aws target runs one per GPU)."""
    import tensorflow as tf

    if getattr(_worker_setup, "done", False):
        return
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _worker_setup.done = True


def _predict(batches, lake_root: str, run: str, bucket: Bucket, top_k: int, crops: int, threads: int):
    """mapInPandas body: decode batch i+1 on a thread pool while the network predicts batch i."""
    from concurrent.futures import ThreadPoolExecutor

    _worker_setup(threads)
    pred = cached(lake_root, run)
    side = images.eval_side(pred.input_size)

    def decode(pdf):
        arrays, reasons, details = images.read_each(bucket, pdf["object_key"], lambda rgb: pred.prepare(rgb, crops),
                                                    threads=max(2, threads), min_side=side)
        return pdf, arrays, reasons, details

    with ThreadPoolExecutor(1) as ahead:
        pending = None
        for pdf in batches:
            nxt = ahead.submit(decode, pdf[KEEP].reset_index(drop=True))
            if pending is not None:
                yield _finish(pred, *pending.result(), top_k, crops)
            pending = nxt
        if pending is not None:
            yield _finish(pred, *pending.result(), top_k, crops)


def _finish(pred, pdf, arrays, reasons, details, top_k: int, crops: int):
    import pandas as pd

    ok = [i for i, a in enumerate(arrays) if a is not None]
    out = pdf.copy()
    for o in pred.outputs:
        for suffix in ("class", "lat", "lon", "km", "topk_class", "topk_prob"):
            out[f"{o}_{suffix}"] = pd.Series([None] * len(pdf), dtype=object)
    if ok:
        locs = pred.locations(pred.probabilities(np.concatenate([arrays[i] for i in ok]), crops), top_k)
        dist = distances(locs, pdf["latitude"].to_numpy(float)[ok], pdf["longitude"].to_numpy(float)[ok])
        for o, v in locs.items():
            for col, vals in (("class", v["class"]), ("lat", v["lat"]), ("lon", v["lon"]), ("km", dist[o])):
                out.loc[ok, f"{o}_{col}"] = pd.Series([None if x != x else x for x in vals.tolist()], index=ok, dtype=object)
            out.loc[ok, f"{o}_topk_class"] = pd.Series([r.tolist() for r in v["topk_class"]], index=ok, dtype=object)
            out.loc[ok, f"{o}_topk_prob"] = pd.Series([r.tolist() for r in v["topk_prob"]], index=ok, dtype=object)
    out[REASON], out["detail"] = reasons, details
    return out


def photo_set(spark, lake: Lake, photos: str):
    """(DataFrame of ``KEEP`` columns + reject_reason, description) for ``--photos``."""
    from pyspark.sql import functions as F

    from deeploc.storage.slice_io import read_files
    from deeploc.storage.uris import filesystem

    if photos.endswith(".parquet") or _is_folder(photos):
        given = spark.read.parquet(photos)
    else:
        fs, path = filesystem(photos)
        with fs.open_input_stream(path) as f:
            lines = [ln.strip() for ln in f.read().decode().splitlines() if ln.strip()]
        column = "photo_id" if all(ln.isdigit() for ln in lines) else "object_key"
        given = spark.createDataFrame([(int(ln) if column == "photo_id" else ln,) for ln in lines],
                                      f"{column} {'long' if column == 'photo_id' else 'string'}")
    key = "photo_id" if "photo_id" in given.columns else "object_key"
    if key not in given.columns:
        raise ValueError(f"{photos}: needs a photo_id or an object_key column")
    known = given.select(key, *[c for c in ("latitude", "longitude") if c in given.columns and key != "photo_id"])
    faces = catalog.plan(lake, "faces")
    if faces.files:  # location and attribution of known photos
        faces = read_files(spark, faces.files, faces.arrow_schema).select(*KEEP)
        joined = known.join(faces.drop(*[c for c in ("latitude", "longitude") if c in known.columns]), key, "left")
    else:
        joined = known
    if key == "photo_id":  # an id must be a known photo: its object key comes from faces/
        reason = F.when(F.col("object_key").isNull(), F.lit("unknown_photo_id"))
    else:
        reason = F.lit(None).cast("string")
    return joined.select(*(F.col(c) if c in joined.columns else F.lit(None).alias(c) for c in KEEP),
                         reason.alias(REASON)), f"photos {photos}"


def _is_folder(location: str) -> bool:
    from pyarrow import fs as pafs

    from deeploc.storage.uris import filesystem

    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def run(lake: str, bucket: Bucket, run: str | None = None, split: str = "test", photos: str | None = None,
        top_k: int = 5, crops: int = 1, name: str | None = None) -> dict:
    """Predict a split of the run's image set, or ``photos``; commit them as the predictions named
    ``name`` (default: the run); return the ledger."""
    from pyiceberg.expressions import EqualTo
    from pyspark.sql import functions as F

    from deeploc.spark import session
    from deeploc.storage.slice_io import arrow_schema, write_table_files

    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}, got {crops}")
    lake_ = Lake(lake)
    run = runs.resolve(lake_, run)
    name = name or run
    summary = commit.read_json(lake_, f"models/{run}", "summary.json", "train")  # the summary, never the model
    outputs = outputs_of(summary)
    spark = session("deeploc-infer")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "128")
    if photos:
        todo, source = photo_set(spark, lake_, photos)
    else:
        parts = commit.require(lake_, f"partitionings/{summary['image_set']}", "the partitioning stage")
        todo = (spark.read.parquet(f"{parts}/photos.parquet")
                .filter(F.col("split") == split).select(*KEEP, F.lit(None).cast("string").alias(REASON)))
        source = f"the {split} split of {summary['image_set']} (split by {summary['split_rule']['by']})"
    rows_in = todo.count()
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    log.info("infer: run %s as %s, %d photos (%s), outputs %s, %d crop(s)", run, name, rows_in, source, outputs, crops)
    unknown = todo.filter(F.col(REASON).isNotNull())
    work = todo.filter(F.col(REASON).isNull()).drop(REASON).repartition(max(2, spark.sparkContext.defaultParallelism))
    root = lake_.root
    labelled = work.mapInPandas(lambda it: _predict(it, root, run, bucket, top_k, crops, threads), schema(outputs))
    flat, folders = lake_.path("_scratch", f"infer-{uuid.uuid4().hex[:12]}"), []
    try:
        labelled.write.parquet(flat)  # predicted once; both tables come from here
        done = spark.read.parquet(flat)
        frames = {"predictions": done.filter(F.col(REASON).isNull()).drop(REASON, "detail"),
                  "rejects/infer": done.filter(F.col(REASON).isNotNull()).select("photo_id", "object_key", REASON, "detail")
                  .unionByName(unknown.select("photo_id", "object_key", REASON, F.lit(None).cast("string").alias("detail")))}
        frames = {k: v.withColumn("run", F.lit(name)) for k, v in frames.items()}
        files = {}
        for table, frame in frames.items():
            folder, files[table] = write_table_files(frame, lake_, table, ("run",))
            folders.append(folder)
        rejected = spark.read.parquet(*files["rejects/infer"]) if files["rejects/infer"] else None
        rejects = {r[REASON]: r["count"] for r in rejected.groupBy(REASON).count().collect()} if rejected else {}
        entry = ledger.record(lake_, "infer", name, rows_in, ledger.footer_rows(lake_, files["predictions"]), rejects,
                              photos=source, split=None if photos else split, crops=crops,
                              split_rule=summary["split_rule"])
    except BaseException:
        for folder in folders:
            lake_.delete(folder)
        raise
    finally:
        lake_.delete(flat)
    for table, frame in frames.items():
        catalog.commit(lake_, table, files[table], EqualTo("run", name), ("run",), arrow_schema(frame),
                       {"stage": "infer", "scope": name, **{k: entry[k] for k in ("in", "out", "rejected", "rejects")},
                        "photos": source, "crops": crops})
    return entry
