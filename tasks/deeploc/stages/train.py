"""Train stage: an image set's partitionings and its prepared shards -> ``models/<run>/``.

Each completed epoch is checkpointed in the lake (``deeploc.storage.checkpoints``); the same command after a
kill resumes after the last completed epoch, with the optimizer's state, the learning-rate schedule's
position and the history as they were. The exported model is the one with the lowest validation loss;
the last epoch's is kept beside it, with the cells, the hierarchy, ``history.csv`` (one row per epoch),
TensorBoard logs, ``calibration.json`` (each partitioning's temperature, fitted on up to
``CALIBRATION_PHOTOS`` validation photos, which every prediction applies: ``deeploc.learn.calibration``) and
the kNN index of up to ``knn.INDEX_PHOTOS`` training photos' embeddings (``deeploc.learn.knn``). Training
streams the shards (``deeploc shards``; from S3 through a bounded local cache, ``deeploc.storage.shard_cache``);
``--input images`` reads the images themselves every epoch,
which only suits tiny sets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import pandas as pd

from deeploc.earth.partitioning import Partitionings
from deeploc.learn import calibration, knn, profiles, training_data
from deeploc.sources.bucket import Bucket
from deeploc.step import Interrupted
from deeploc.storage import commit, runs
from deeploc.storage.checkpoints import Checkpoints
from deeploc.storage.lake import Lake
from deeploc.storage.shard_cache import ShardCache
from deeploc.storage.uris import is_s3

log = logging.getLogger(__name__)
INPUTS = ("shards", "images")
CALIBRATION_PHOTOS = 10_000  # enough for one number per output; bounds memory (photos x classes floats)


def _partitionings(held: contextlib.ExitStack, lake: Lake, image_set: str, profile: str,
                   any_partitionings: bool) -> tuple[str, dict]:
    """A local folder with the image set's partitionings (held until ``held`` closes), and their report;
    refused when they were built for another profile (unless ``any_partitionings``)."""
    folder = held.enter_context(lake.local_copy(commit.require(lake, f"partitionings/{image_set}",
                                                               "the partitioning stage")))
    with open(os.path.join(folder, "report.json")) as f:
        report = json.load(f)
    if report.get("profile") != profile and not any_partitionings:
        raise ValueError(f"train: the {image_set} partitionings were built for profile {report.get('profile')!r}, "
                         f"not {profile!r}; rebuild them (deeploc partitioning --profile {profile}) or pass "
                         "--any-partitionings")
    return folder, report


def _shard_source(lake: Lake, image_set: str, short_side: int, order: list[str], local: str,
                  cache_gb: float) -> dict:
    """{split: (training_data.Source, records)} of the image set's shards, checked against the run. On an
    S3 lake the training files stream through a local cache of ``cache_gb`` and the validation files
    (a capped sample) are kept whole."""
    rel = commit.require(lake, f"shards/{image_set}", "deeploc shards (or train with --input images for a tiny set)")
    index = json.loads(lake.read_bytes(f"{rel}/index.json"))
    if (index.get("format"), index.get("short_side"), index["partitionings"]) != ("jpeg", short_side, order):
        raise ValueError(f"train: the shards under {rel} are {index.get('format', 'raw pixels')} at "
                         f"{index.get('short_side', index.get('side'))} px for partitionings {index['partitionings']}, "
                         f"not JPEG at {short_side} px for {order}; run deeploc shards again")
    out = {}
    for split, limit in (("train", cache_gb * 1e9), ("val", float("inf"))):
        names = [e["file"] for e in index["splits"][split]]
        if lake.remote:
            source = training_data.Source(order, files=[f"{rel}/{n}" for n in names],
                                          cache=ShardCache(lake, os.path.join(local, split), int(min(limit, 2 ** 62))))
        else:
            source = training_data.Source(order, files=[os.path.join(rel, n) for n in names])
        out[split] = (source, sum(e["records"] for e in index["splits"][split]))
    return out


def run(lake: str, bucket: Bucket, run: str, image_set: str = "full", profile: str = "demo",
        epochs: int | None = None, backbone: str | None = None, weights: str | None = None,
        learning_rate: float | None = None, batch_size: int | None = None, schedule: str | None = None,
        warmup_epochs: float | None = None, optimizer: str | None = None, weight_decay: float | None = None,
        input: str = "shards", shard_cache_gb: float = 50.0, any_partitionings: bool = False,
        seed: int = 1) -> dict:
    """Train (or resume training) the run; publish ``models/<run>/``; return its summary."""
    import keras

    from deeploc.learn import model as model_mod

    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    lake_ = Lake(lake)
    prof = profiles.get(profile).with_overrides(epochs=epochs, backbone=backbone, learning_rate=learning_rate,
                                                batch_size=batch_size, schedule=schedule, warmup_epochs=warmup_epochs,
                                                optimizer=optimizer, weight_decay=weight_decay)
    if weights is not None:
        prof = prof.with_overrides(weights=None if weights == "none" else weights)
    with contextlib.ExitStack() as held:  # the partitionings' local copy (S3) and the work folder go at the end
        part_dir, report = _partitionings(held, lake_, image_set, profile, any_partitionings)
        order = report["order"]
        outputs = Partitionings.read(part_dir, order).classes
        if min(outputs.values()) < 2:
            raise ValueError(f"train: every partitioning needs >= 2 classes, got {outputs}; lower tau_max or add data")
        photos = pd.read_parquet(os.path.join(part_dir, "photos.parquet"))
        tr, va = photos[photos["split"] == "train"], photos[photos["split"] == "val"]
        config = {"profile": prof.as_dict(), "image_set": image_set, "order": order, "outputs": outputs,
                  "input": input, "split_rule": report["split_rule"], "seed": seed}
        devices = model_mod.configure_devices()
        keras.utils.set_random_seed(seed)
        ckpt = Checkpoints(lake_, run)
        work = held.enter_context(tempfile.TemporaryDirectory(prefix="deeploc-train-", ignore_cleanup_errors=True))
        if input == "shards":
            sources = _shard_source(lake_, image_set, prof.shard_side, order, os.path.join(work, "shards"),
                                    shard_cache_gb)
        else:
            sources = {s: (training_data.Source(order, photos=df, bucket=bucket, short_side=prof.shard_side), len(df))
                       for s, df in (("train", tr), ("val", va))}
        (train_src, n_train), (val_src, n_val) = sources["train"], sources["val"]
        val_ds = training_data.validation(val_src, prof.input_size, prof.batch_size)
        saver, resumed = _fit(ckpt, config, prof, train_src, n_train, val_ds, n_val, work)
        summary = {**_summary(saver.history, saver.best, tr, va, run, config, report), "devices": devices,
                   "resumed_after_epochs": resumed, "val_images": n_val,   # validated on (the shards keep a sample)
                   "weights": model_mod.weights_origin(prof.backbone, prof.weights)}   # what it started from
        _export(lake_, run, ckpt, summary, val_ds, training_data.ids_and_images(train_src, prof.input_size, prof.batch_size),
                photos, part_dir)
    ckpt.clear()
    runs.mark_latest(lake_, run, image_set)
    log.info("train: best epoch %d, val loss %.3f, fine val acc %.3f vs %.3f for the class prior -> %s",
             summary["best_epoch"], summary["best_val_loss"], _or_nan(summary["val_acc_fine_best"]),
             _or_nan(summary["val_acc_fine_prior"]), commit.current(lake_, f"models/{run}"))
    return summary


def _fit(ckpt: Checkpoints, config: dict, prof, train_src, n_train: int, val_ds, n_val: int, work: str):
    """The epochs after the last one checkpointed (all of them for a new run), each sent to the lake as it
    ends; a spot notice saves the epoch in progress and ends the try. Returns the epoch saver (history and
    best epoch) and the epochs this run resumed after."""
    import keras

    state, history = ckpt.state(), ckpt.history()
    if state is not None and state["config"] != config:
        raise ValueError(f"train: {ckpt.lake.path(ckpt.rel)} holds a run with other settings; "
                         "use another --run, or delete that folder to start over")
    precision = resume_precision(state, keras.mixed_precision.global_policy().name)
    keras.mixed_precision.set_global_policy(precision)
    steps = -(-n_train // prof.batch_size)  # exact: each epoch's batches end with the epoch
    net, start, best, resumed, history = _network(ckpt, state, history, prof, config["outputs"], steps, work)
    tensorboard = os.path.join(work, "tensorboard")
    if state is None:
        log.info("train: profile %s, backbone %s %dpx, outputs %s, %d train / %d val images, %d epochs, %s",
                 prof.name, prof.backbone, prof.input_size, config["outputs"], n_train, n_val, prof.epochs,
                 config["input"])
    else:
        ckpt.download_tensorboard(tensorboard)
    base = {"config": config, "resumed_after": resumed, "precision": precision}
    savers, saver = epoch_saver(ckpt, work, history, best, base, tensorboard)
    try:
        if start < prof.epochs:  # epochs start .. end, each the same as in an unbroken run
            train_ds = training_data.training(train_src, prof.input_size, prof.batch_size, config["seed"], start,
                                              prof.epochs)
            log.info("train: epoch %d begins with batch sha256 %s", start + 1, training_data.first_batch_digest(train_ds))
            net.fit(train_ds, validation_data=val_ds, epochs=prof.epochs, initial_epoch=start, steps_per_epoch=steps,
                    validation_steps=-(-n_val // prof.batch_size), shuffle=False, verbose=2,
                    callbacks=[keras.callbacks.TensorBoard(tensorboard, histogram_freq=0, write_graph=False), *savers])
    except Interrupted:  # a spot reclaim notice: two minutes to keep what this epoch has learned so far
        net.save(os.path.join(work, "interrupted.keras"))
        ckpt.save_interrupted(os.path.join(work, "interrupted.keras"), saver.epoch, int(net.optimizer.iterations), base)
        raise
    return saver, resumed


def _network(ckpt: Checkpoints, state: dict | None, history: list[dict], prof, outputs: dict[str, int], steps: int,
             work: str):
    """A new network, compiled with the profile's optimizer and schedule, or the checkpoint's to resume:
    (network, epochs done, best so far, the epochs resumed after, history up to them)."""
    import keras

    from deeploc.learn import model as model_mod

    with model_mod.strategy().scope():  # variables mirrored over the GPUs when there are several
        if state is None:
            net = model_mod.build(prof.backbone, prof.input_size, outputs, _local_weights(prof.weights, work))
            model_mod.compile_model(net, list(outputs), model_mod.optimizer(prof.optimizer, model_mod.learning_rate(
                prof.learning_rate, prof.schedule, steps, prof.epochs, prof.warmup_epochs), prof.weight_decay))
            return net, 0, {"val_loss": float("inf"), "epoch": 0}, [], history
        stopped = state.get("interrupted")  # a try stopped inside an epoch: its model is newer
        start, best = state.get("epoch", 0), state.get("best", {"val_loss": float("inf"), "epoch": 0})
        model_file = stopped["model"] if stopped else state["model"]
        model_mod.normalise_layer()  # registers the layer the saved model names
        net = keras.models.load_model(ckpt.fetch(model_file, os.path.join(work, model_file)))
    log.info("train: resuming after epoch %d of %d%s (best val loss %.4f at epoch %d)", start, prof.epochs,
             f", from inside epoch {stopped['epoch'] + 1} ({stopped['iterations']} steps in all)"
             if stopped else "", best["val_loss"], best["epoch"])
    return net, start, best, [*state.get("resumed_after", []), start], [h for h in history if int(h["epoch"]) <= start]


def _export(lake: Lake, run: str, ckpt: Checkpoints, summary: dict, val_ds, train_batches, photos: pd.DataFrame,
            part_dir: str) -> None:
    """``models/<run>/``, committed whole: the best model (and the last), its calibration and kNN index
    (both computed here, into ``summary``), the partitionings it learnt, the history and the logs."""
    import keras

    order, outputs = summary["order"], summary["outputs"]
    with commit.building(lake, f"models/{run}") as out:
        ckpt.fetch("best.keras", os.path.join(out, "model.keras"))
        best_net = keras.models.load_model(os.path.join(out, "model.keras"), compile=False)
        summary["calibration"] = calibrate(best_net, val_ds, order)
        with open(os.path.join(out, calibration.FILE), "w") as f:
            json.dump(summary["calibration"], f, indent=2)
        summary["knn"] = index_photos(best_net, train_batches, photos, order, outputs[order[-1]], out)
        ckpt.fetch(ckpt.state()["model"], os.path.join(out, "last.keras"))
        for name in ("cells.parquet", "hierarchy.parquet", "report.json"):
            shutil.copy(os.path.join(part_dir, name), out)
        ckpt.fetch("history.csv", os.path.join(out, "history.csv"))
        ckpt.download_tensorboard(os.path.join(out, "tensorboard"))
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value   # 0.0 is a value: a prior that never hits


def _local_weights(weights: str | None, work: str) -> str | None:
    """A weights file given as an s3:// URI is fetched into the run's work folder first."""
    if not weights or not is_s3(weights):
        return weights
    dest = os.path.join(work, os.path.basename(weights))
    with open(dest, "wb") as f:
        f.write(Lake(weights.rsplit("/", 1)[0]).read_bytes(weights))
    return dest


def resume_precision(state: dict | None, here: str) -> str:
    """The precision to train in: this machine's (``here``) for a new run; a resumed run keeps the one
    its checkpoint was written in (its optimizer state is of that kind: a float16 run's loss scale), even
    where it is slower, so that the run goes on exactly."""
    then = (state or {}).get("precision", here)
    if then != here:
        log.warning("train: the checkpoint was written in %s precision; resuming in it (this machine would use %s)",
                    then, here)
    return then


def calibrate(net, val_ds, order: list[str]) -> dict:
    """Temperatures fitted on the validation photos' outputs (``deeploc.learn.calibration.fit``)."""
    probs, labels, seen = {o: [] for o in order}, {o: [] for o in order}, 0
    for x, y, w in val_ds:
        out = net(x, training=False)
        for o in order:
            probs[o].append(np.asarray(out[o], np.float32))
            labels[o].append(np.asarray(y[o]))  # -1 where the photo has no class there
        seen += len(x)
        if seen >= CALIBRATION_PHOTOS:
            break
    if not seen:
        return {o: {"temperature": 1.0, "photos": 0, "ece_before": None, "ece_after": None} for o in order}
    return calibration.fit({o: np.concatenate(probs[o]) for o in order}, {o: np.concatenate(labels[o]) for o in order})


def index_photos(net, batches, photos: pd.DataFrame, order: list[str], n_cells: int, out: str) -> dict:
    """Embed the training photos (up to knn.INDEX_PHOTOS) and save the kNN index of those in a finest cell."""
    import keras

    embed = keras.Model(net.inputs, net.get_layer(order[0]).input)  # the Dense outputs' shared input
    ids, vectors, seen = [], [], 0
    for x, batch_ids in batches:
        vectors.append(np.asarray(embed(x, training=False), np.float32))
        ids.append(np.asarray(batch_ids, np.int64))
        seen += len(ids[-1])
        if seen >= knn.INDEX_PHOTOS:
            break
    ids, vectors = np.concatenate(ids)[:knn.INDEX_PHOTOS], np.concatenate(vectors)[:knn.INDEX_PHOTOS]
    where = photos.set_index("photo_id").loc[ids, ["latitude", "longitude", f"class_{order[-1]}"]]
    keep = where[f"class_{order[-1]}"].to_numpy() >= 0
    where = where[keep]
    refiner = knn.Refiner(knn.build(vectors[keep], where[f"class_{order[-1]}"].to_numpy(), n_cells),
                          where["latitude"].to_numpy(), where["longitude"].to_numpy())
    refiner.save(out)
    log.info("train: kNN index of %d training photos (width %d)", int(keep.sum()), vectors.shape[1])
    return {"photos": int(keep.sum()), "width": int(vectors.shape[1]), "neighbours": knn.NEIGHBOURS,
            "cells": knn.CELLS, "group_km": knn.GROUP_KM}


def epoch_saver(ckpt: Checkpoints, work: str, history: list[dict], best: dict, state: dict, tensorboard: str):
    """Keras's callbacks, then one sync: ``ModelCheckpoint`` writes the last epoch's model and, when the
    validation loss improved on the best so far (a resumed run's included), the best one; after them,
    the sync appends the history row and sends the epoch to the lake (``Checkpoints.save_epoch``).

    Keras's ``CSVLogger`` numbers epochs from 0, and ``history.csv`` is a contract from 1 with the learning
    rate and the epoch's seconds, so the row is written here. ``BackupAndRestore`` is not used: its one
    backup is local (a reclaimed instance takes it along) and saves inside an epoch only every N steps,
    where a spot notice saves at the moment it comes (``Checkpoints.save_interrupted``)."""
    import keras

    last, kept = os.path.join(work, "last.keras"), os.path.join(work, "best.keras")
    best_cb = keras.callbacks.ModelCheckpoint(kept, monitor="val_loss", mode="min", save_best_only=True,
                                              initial_value_threshold=best["val_loss"])

    class _LakeSync(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history, self.best, self.t0, self.epoch = history, best, time.monotonic(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.epoch = time.monotonic(), epoch

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            lr = self.model.optimizer.learning_rate
            self.history = [*self.history, {"epoch": done, **{k: float(v) for k, v in (logs or {}).items()},
                                            "learning_rate": float(lr.numpy() if hasattr(lr, "numpy") else lr),
                                            "seconds": round(time.monotonic() - self.t0, 2)}]
            improved = best_cb.best < self.best["val_loss"]
            if improved:
                self.best = {"val_loss": float(best_cb.best), "epoch": done}
            ckpt.save_epoch(done, last, kept if improved else None, self.history, {**state, "best": self.best},
                            tensorboard)

    sync = _LakeSync()
    return [keras.callbacks.ModelCheckpoint(last), best_cb, sync], sync


def _summary(history: list[dict], best: dict, tr, va, run: str, config: dict, report: dict) -> dict:
    """The run's summary, with the bar a model must clear: always predicting the most frequent cell."""
    fine = config["order"][-1]
    prior_class = int(tr[f"class_{fine}"][tr[f"class_{fine}"] >= 0].mode().iloc[0])
    va_fine = va[f"class_{fine}"].to_numpy()
    best_row = next(h for h in history if int(h["epoch"]) == best["epoch"])
    acc = best_row.get(f"val_{fine}_acc")
    return {
        "run": run, **{k: config[k] for k in ("image_set", "profile", "order", "outputs", "input")},
        "train_images": len(tr), "epochs": len(history), "best_epoch": best["epoch"],
        "best_val_loss": best["val_loss"], "val_acc_fine_best": None if acc in (None, "") else float(acc),
        "val_acc_fine_prior": float(np.mean(va_fine[va_fine >= 0] == prior_class)) if (va_fine >= 0).any() else None,
        "split_rule": report["split_rule"], "partitioning_report": {k: report.get(k) for k in ("profile", "spec")},
        "face_threshold": report.get("face_threshold") if config["image_set"] == "removal" else None,
    }
