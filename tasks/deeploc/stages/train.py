"""Train stage: labelled images -> ``models/<run>/`` (model, cells, hierarchy, history, summary).

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

from deeploc import commit, images, profiles, runs
from deeploc.bucket import Bucket
from deeploc.lake import Lake

log = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 2 * 1024**3  # decoded images are cached in memory below this size


def input_pipeline(df: pd.DataFrame, outputs: list[str], bucket: Bucket, side: int, batch: int, train: bool,
                   seed: int):
    """tf.data pipeline of (image, {output: class}, {output: weight}); a class of -1 gets weight 0."""
    import tensorflow as tf

    big = images.eval_side(side)
    classes = {o: np.maximum(df[f"class_{o}"].to_numpy(np.int32), 0) for o in outputs}
    weights = {o: (df[f"class_{o}"].to_numpy() >= 0).astype(np.float32) for o in outputs}
    keys = df["object_key"].to_numpy(str)

    def load(key):
        return images.resize_square(images.read_rgb(bucket, key.decode()), big)

    ds = tf.data.Dataset.from_tensor_slices((keys, classes, weights))
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


def run(lake: str, bucket: Bucket, run: str, image_set: str = "full", profile: str = "demo",
        epochs: int | None = None, backbone: str | None = None, weights: str | None = None, seed: int = 1) -> dict:
    """Train the profile's network on an image set's partitionings; publish ``models/<run>/``."""
    import keras

    from deeploc import model as model_mod

    lake_ = Lake(lake)
    prof = profiles.get(profile).with_overrides(epochs=epochs, backbone=backbone)
    if weights is not None:
        prof = prof.with_overrides(weights=None if weights == "none" else weights)
    if not lake_.exists(lake_.path("partitionings", image_set, "photos.parquet")):
        raise FileNotFoundError(f"train: no partitionings under {lake_.path('partitionings', image_set)}; "
                                "run the partitioning stage first")
    part_dir = lake_.download(f"partitionings/{image_set}")
    with open(os.path.join(part_dir, "report.json")) as f:
        order = json.load(f)["order"]
    cells = pd.read_parquet(os.path.join(part_dir, "cells.parquet"))
    photos = pd.read_parquet(os.path.join(part_dir, "photos.parquet"))
    outputs = {o: int((cells["partitioning"] == o).sum()) for o in order}
    if min(outputs.values()) < 2:
        raise ValueError(f"train: every partitioning needs >= 2 classes, got {outputs}; lower tau_max or add data")
    tr, va = photos[photos["split"] == "train"], photos[photos["split"] == "val"]
    log.info("train: profile %s, backbone %s %dpx, outputs %s, %d train / %d val images, %d epochs",
             prof.name, prof.backbone, prof.input_size, outputs, len(tr), len(va), prof.epochs)

    keras.utils.set_random_seed(seed)
    net = model_mod.compile_model(model_mod.build(prof.backbone, prof.input_size, outputs, prof.weights),
                                  list(outputs), prof.learning_rate)
    with commit.building(lake_, f"models/{run}") as tmp:
        best = os.path.join(tmp, "model.keras")
        history = net.fit(
            input_pipeline(tr, list(outputs), bucket, prof.input_size, prof.batch_size, True, seed),
            validation_data=input_pipeline(va, list(outputs), bucket, prof.input_size, prof.batch_size, False, seed),
            epochs=prof.epochs, verbose=2,
            callbacks=[keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True)])
        net.save(os.path.join(tmp, "last.keras"))
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        summary = _summary(hist, tr, va, order, outputs, prof, run, image_set)
        for name in ("cells.parquet", "hierarchy.parquet", "report.json"):
            shutil.copy(os.path.join(part_dir, name), tmp)
        for name, obj in (("history.json", hist), ("summary.json", summary)):
            with open(os.path.join(tmp, name), "w") as f:
                json.dump(obj, f, indent=2)
    runs.mark_latest(lake_, run, image_set)
    log.info("train: best epoch %d, val loss %.3f, fine val acc %.3f vs %.3f for the class prior -> %s",
             summary["best_epoch"], summary["best_val_loss"], summary["val_acc_fine_best"] or float("nan"),
             summary["val_acc_fine_prior"] or float("nan"), lake_.path("models", run))
    return summary


def _summary(hist: dict, tr, va, order: list[str], outputs: dict, prof, run: str, image_set: str) -> dict:
    """The run's summary, with the bar a model must clear: always predicting the most frequent cell."""
    fine = order[-1]
    prior_class = int(tr[f"class_{fine}"][tr[f"class_{fine}"] >= 0].mode().iloc[0])
    va_fine = va[f"class_{fine}"].to_numpy()
    best_epoch = int(np.argmin(hist["val_loss"]))
    return {
        "run": run, "image_set": image_set, "profile": prof.as_dict(), "order": order, "outputs": outputs,
        "train_images": len(tr), "val_images": len(va), "best_epoch": best_epoch + 1,
        "best_val_loss": hist["val_loss"][best_epoch],
        "val_acc_fine_best": hist.get(f"val_{fine}_acc", [None] * (best_epoch + 1))[best_epoch],
        "val_acc_fine_prior": float(np.mean(va_fine[va_fine >= 0] == prior_class)) if (va_fine >= 0).any() else None,
    }
