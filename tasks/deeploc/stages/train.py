"""Train stage: labelled images -> ``models/<run>/`` (model, partitions, hierarchy, history).

Training images get a random crop at the evaluation scale (resize the shorter side to 1.5x the input,
crop an input-sized square anywhere); validation uses the fixed centre crop that inference uses. The
checkpoint with the lowest validation loss is the model; the last epoch is kept beside it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pandas as pd

from deeploc import images, profiles
from deeploc.bucket import Bucket
from deeploc.lake import Lake

log = logging.getLogger(__name__)

EVAL_SCALE = 1.5
CACHE_LIMIT_BYTES = 2 * 1024**3  # decoded images are cached in memory below this size


def load_resized(bucket: Bucket, key: str, side: int) -> np.ndarray:
    """Decode and resize so the shorter side is 1.5 x ``side`` (the common input of every transform)."""
    rgb = images.read_rgb(bucket, key)
    return images.resize_square(rgb, int(round(side * EVAL_SCALE)), crop_scale=1.0)


def dataset(df: pd.DataFrame, heads: list[str], bucket: Bucket, side: int, batch: int, train: bool, seed: int):
    """tf.data pipeline: (image, {head: label}, {head: weight}); a label of -1 gets weight 0."""
    import tensorflow as tf

    big = int(round(side * EVAL_SCALE))
    labels = {h: np.maximum(df[f"label_{h}"].to_numpy(np.int32), 0) for h in heads}
    weights = {h: (df[f"label_{h}"].to_numpy() >= 0).astype(np.float32) for h in heads}
    keys = df["object_key"].to_numpy(str)

    def load(key):
        return load_resized(bucket, key.decode(), side).astype(np.uint8)

    ds = tf.data.Dataset.from_tensor_slices((keys, labels, weights))
    ds = ds.map(lambda k, y, w: (tf.ensure_shape(tf.numpy_function(load, [k], tf.uint8), (big, big, 3)), y, w),
                num_parallel_calls=tf.data.AUTOTUNE)
    if len(df) * big * big * 3 < CACHE_LIMIT_BYTES:
        ds = ds.cache()
    if train:
        ds = ds.shuffle(min(len(df), 10_000), seed=seed, reshuffle_each_iteration=True)
        crop = lambda img: tf.image.random_crop(img, (side, side, 3), seed=seed)  # noqa: E731
    else:
        off = (big - side) // 2
        crop = lambda img: img[off:off + side, off:off + side, :]  # noqa: E731
    ds = ds.map(lambda img, y, w: (tf.cast(crop(img), tf.float32), y, w), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def run(lake_root: str, bucket: str, run_name: str, dataset_name: str = "full", profile: str = "demo",
        epochs: int | None = None, backbone: str | None = None, weights: str | None = None, seed: int = 1) -> dict:
    import keras

    from deeploc import model as model_mod

    lake, bucket = Lake(lake_root), bucket if isinstance(bucket, Bucket) else Bucket.of(bucket)
    prof = profiles.get(profile).with_overrides(epochs=epochs, backbone=backbone)
    if weights is not None:
        prof = prof.with_overrides(weights=None if weights == "none" else weights)
    if not lake.exists(lake.path("partitions", dataset_name, "labels.parquet")):
        raise FileNotFoundError(f"train: no partitions under {lake.path('partitions', dataset_name)}; "
                                "run the partition stage first")
    part_dir = lake.local_copy(f"partitions/{dataset_name}")
    with open(os.path.join(part_dir, "report.json")) as f:
        order = json.load(f)["order"]
    cells = pd.read_parquet(os.path.join(part_dir, "cells.parquet"))
    labels = pd.read_parquet(os.path.join(part_dir, "labels.parquet"))
    heads = {h: int((cells["partitioning"] == h).sum()) for h in order}
    if min(heads.values()) < 2:
        raise ValueError(f"train: every partitioning needs >= 2 classes, got {heads}; lower tau_max or add data")
    tr, va = labels[labels["split"] == "train"], labels[labels["split"] == "val"]
    log.info("train: profile %s, backbone %s %dpx, heads %s, %d train / %d val images, %d epochs",
             prof.name, prof.backbone, prof.input_size, heads, len(tr), len(va), prof.epochs)

    keras.utils.set_random_seed(seed)
    net = model_mod.compile_model(model_mod.build(prof.backbone, prof.input_size, heads, prof.weights),
                                  list(heads), prof.learning_rate)
    with lake.building(f"models/{run_name}") as tmp:
        best = os.path.join(tmp, "model.keras")
        history = net.fit(
            dataset(tr, list(heads), bucket, prof.input_size, prof.batch_size, True, seed),
            validation_data=dataset(va, list(heads), bucket, prof.input_size, prof.batch_size, False, seed),
            epochs=prof.epochs, verbose=2,
            callbacks=[keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True)])
        net.save(os.path.join(tmp, "last.keras"))
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        summary = _summary(hist, tr, va, order, heads, prof, run_name, dataset_name)
        for name in ("cells.parquet", "hierarchy.parquet", "report.json"):
            shutil.copy(os.path.join(part_dir, name), tmp)
        for name, obj in (("history.json", hist), ("summary.json", summary)):
            with open(os.path.join(tmp, name), "w") as f:
                json.dump(obj, f, indent=2)
    lake.write_json("models/LATEST.json", {"run": run_name, "dataset": dataset_name})
    log.info("train: best epoch %d, val loss %.3f, fine val acc %.3f vs %.3f for the class prior -> %s",
             summary["best_epoch"], summary["best_val_loss"], summary["val_acc_fine_best"] or float("nan"),
             summary["val_acc_fine_prior"] or float("nan"), lake.path("models", run_name))
    return summary


def _summary(hist: dict, tr, va, order: list[str], heads: dict, prof, run_name: str, dataset_name: str) -> dict:
    """The run's summary, with the bar a model must clear: always predicting the most frequent cell."""
    fine = order[-1]
    prior_class = int(tr[f"label_{fine}"][tr[f"label_{fine}"] >= 0].mode().iloc[0])
    va_fine = va[f"label_{fine}"].to_numpy()
    best_epoch = int(np.argmin(hist["val_loss"]))
    return {
        "run": run_name, "dataset": dataset_name, "profile": prof.as_dict(), "order": order, "heads": heads,
        "train_images": len(tr), "val_images": len(va), "best_epoch": best_epoch + 1,
        "best_val_loss": hist["val_loss"][best_epoch],
        "val_acc_fine_best": hist.get(f"val_{fine}_acc", [None] * (best_epoch + 1))[best_epoch],
        "val_acc_fine_prior": float(np.mean(va_fine[va_fine >= 0] == prior_class)) if (va_fine >= 0).any() else None,
    }
