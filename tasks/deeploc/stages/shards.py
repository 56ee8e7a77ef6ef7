"""Shards stage: the training and validation photos of an image set, each read once, its shorter side
resized to the profile's ``shard_side`` (the whole photo: training crops anywhere in it) and stored as
JPEG in TFRecord files of about ``TARGET_SHARD_BYTES``: training then streams large files instead of
decoding millions of full-size objects every epoch, at ~30-35 KB a photo at 320 px (raw-pixel shards were
~270 KB; ``./dev bench input``). The validation photos are a stable sample of at most ``val_max``.

On the lake, ``shards/<image set>/`` (a folder output, ``deeploc.storage.commit``): ``<split>/part-*.tfrecord``
and ``index.json`` (the files and their record counts, the short side, the partitionings); the
table ``rejects_shards`` holds the photos that could not be read, with the reason, by image set. Each
record: ``image`` (JPEG of ``images.resize_short`` after the shared reader), ``photo_id`` and
``class_<partitioning>``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid

from deeploc.learn import profiles
from deeploc.learn.tfrecord import example, frame
from deeploc.sources import images
from deeploc.sources.bucket import Bucket
from deeploc.storage import catalog, commit, ledger
from deeploc.storage.lake import Lake
from deeploc.storage.tables import REASON

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
TARGET_SHARD_BYTES = 128 << 20  # a file per ~3,000 photos at 320 px: long sequential reads, many files to shuffle
JPEG_BYTES_PER_PIXEL = 0.5      # for sizing the tasks only: ~0.3-0.5 at quality 90 on photos


def val_sample(lake: Lake, photos_file: str, val_max: int):
    """The photo ids of a stable, seeded sample of at most ``val_max`` validation photos (a Series;
    ``attrs["in_split"]``: how many the split has)."""
    from deeploc.learn import splits

    ids = lake.read_parquet(photos_file, columns=["photo_id", "split"]).query("split == 'val'")["photo_id"]
    kept = ids[splits.sample(ids.to_numpy(), val_max, seed=1)].reset_index(drop=True)
    kept.attrs["in_split"] = len(ids)
    return kept


def _write_shards(batches, lake_root: str, staged: str, bucket: Bucket, side: int, outputs: list[str]):
    """mapInPandas body: one shard file per split and task; yields each photo's fate."""
    import pandas as pd

    lake = Lake(lake_root)
    files, local = {}, tempfile.mkdtemp(prefix="deeploc-shards-")
    task = uuid.uuid4().hex[:12]  # a retried task writes new files; only those it reports are indexed
    fates = []
    try:
        for pdf in batches:
            arrays, reasons, details = images.read_each(
                bucket, pdf["object_key"], lambda rgb: images.encode_jpeg(images.resize_short(rgb, side)),
                threads=4, min_side=side)
            names = []
            for row, jpeg, reason in zip(pdf.itertuples(index=False), arrays, reasons):
                if jpeg is None:
                    names.append(None)
                    continue
                name = f"{row.split}/part-{task}.tfrecord"
                if name not in files:  # JPEG bytes: nothing left for GZIP to gain
                    files[name] = open(os.path.join(local, name.replace("/", "_")), "wb")
                files[name].write(frame(example(jpeg, row.photo_id, {o: getattr(row, f"class_{o}") for o in outputs})))
                names.append(name)
            fates.append(pd.DataFrame({"photo_id": pdf["photo_id"], "object_key": pdf["object_key"], "split": pdf["split"],
                                       "shard": names, REASON: reasons, "detail": details}))
        for name, f in files.items():
            f.close()
            lake.put_file(f.name, lake.path(f"{staged}/{name}"))
    finally:
        for f in files.values():
            f.close()  # again after an error: closing twice is harmless
        shutil.rmtree(local, ignore_errors=True)
    yield from fates


def run(lake: str, bucket: Bucket, image_set: str = "full", profile: str = "demo", val_max: int = 25_000) -> dict:
    """Write the shards of an image set's train and (at most ``val_max``) validation photos."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    from pyiceberg.expressions import EqualTo

    from deeploc.spark import session
    from deeploc.storage.slice_io import arrow_schema, write_table_files

    lake_ = Lake(lake)
    parts = commit.require(lake_, f"partitionings/{image_set}", "the partitioning stage")
    photos_file = f"{parts}/photos.parquet"
    report = json.loads(lake_.read_bytes(f"{parts}/report.json"))
    outputs, side = report["order"], profiles.get(profile).shard_side
    spark = session("deeploc-shards")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "128")
    val = val_sample(lake_, photos_file, val_max)
    photos = (spark.read.parquet(photos_file)
              .join(spark.createDataFrame(val.to_frame("photo_id"), "photo_id long").withColumn("val_kept", F.lit(True)),
                    "photo_id", "left")
              .filter((F.col("split") == "train") | F.col("val_kept").isNotNull())
              .select("photo_id", "object_key", "split", *(f"class_{o}" for o in outputs)))
    rows_in = photos.count()
    per_shard = max(1, int(TARGET_SHARD_BYTES / (side * side * 4 / 3 * JPEG_BYTES_PER_PIXEL)))
    tasks = max(spark.sparkContext.defaultParallelism, -(-rows_in // per_shard))
    staged, rej = commit.new_version(lake_, f"shards/{image_set}"), None
    schema = StructType([StructField("photo_id", LongType()), StructField("object_key", StringType()),
                         StructField("split", StringType()), StructField("shard", StringType()),
                         StructField(REASON, StringType()), StructField("detail", StringType())])
    root = lake_.root
    log.info("shards: %d photos of %s (%s) at %d px into ~%d tasks", rows_in, image_set, "/".join(SPLITS), side, tasks)
    try:
        # Hash-partitioned by photo id: every shard mixes months, places and users.
        fates = (photos.repartition(tasks, "photo_id")
                 .mapInPandas(lambda it: _write_shards(it, root, staged, bucket, side, outputs), schema).cache())
        counts = fates.filter(F.col("shard").isNotNull()).groupBy("split", "shard").count().collect()
        rejected = fates.filter(F.col(REASON).isNotNull()).select("photo_id", "object_key", REASON, "detail",
                                                                  F.lit(image_set).alias("image_set"))
        rej, rej_files = write_table_files(rejected, lake_, "rejects/shards", ("image_set",))
        rejects = {r[REASON]: r["count"] for r in fates.filter(F.col(REASON).isNotNull()).groupBy(REASON).count().collect()}
        fates.unpersist()
        index = {"format": "jpeg", "image_set": image_set, "profile": profile, "short_side": side,
                 "val": {"in_split": int(val.attrs["in_split"]), "kept": len(val), "max": val_max}, "input_size": profiles.get(profile).input_size,
                 "partitionings": outputs, "partitioning_report": {k: report[k] for k in ("profile", "spec", "split_rule")},
                 "splits": {s: sorted(({"file": r["shard"], "records": r["count"]} for r in counts if r["split"] == s),
                                      key=lambda x: x["file"]) for s in SPLITS}}
        lake_.write_bytes(f"{staged}/index.json", json.dumps(index, indent=2).encode())
        entry = ledger.record(lake_, "shards", image_set, rows_in, sum(r["count"] for r in counts), rejects, side=side,
                              val_left_out=int(val.attrs["in_split"]) - len(val))
    except BaseException:
        for folder in (staged, rej):
            if folder:
                lake_.delete(folder)
        raise
    catalog.commit(lake_, "rejects/shards", rej_files, EqualTo("image_set", image_set), ("image_set",),
                   arrow_schema(rejected), {"stage": "shards", "scope": image_set,
                                            **{k: entry[k] for k in ("in", "out", "rejected", "rejects")}})
    commit.make_current(lake_, f"shards/{image_set}", staged)
    return entry
