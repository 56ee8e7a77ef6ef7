"""The measured part of the inference benchmark.

    python -m benchmarks.infer_job --make DIR --images N     photos, and two runs with random weights:
                                                             "demo" (the demo profile's small CNN, 64 px)
                                                             and "resnet" (ResNet50V2, 224 px)
    python -m benchmarks.infer_job --run RUN --dir DIR --master local[N]    the infer stage, median of 3
    python -m benchmarks.infer_job --bare RUN --dir DIR       model.predict on images decoded beforehand
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

RUNS = {"demo": ("small_cnn", 64), "resnet": ("ResNet50V2", 224)}
BATCH = 128  # the infer stage's Arrow batch


def make(d: str, n: int) -> None:
    import pandas as pd
    from PIL import Image

    from deeploc.demo.render import render_scene
    from deeploc.sources import yfcc
    from deeploc.sources.images import encode_jpeg
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    rng = np.random.default_rng(2)
    rows = []
    for i in range(n):
        key = yfcc.object_key(yfcc.flickr_hash(f"http://bench-infer/{i}.jpg"))
        path = os.path.join(d, "bucket", key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lat, lon = float(rng.uniform(-60, 70)), float(rng.uniform(-180, 180))
        with open(path, "wb") as f:
            f.write(encode_jpeg(np.asarray(Image.fromarray(render_scene(lat, lon, rng, 512)).resize((640, 480))), 88))
        rows.append({"object_key": key, "latitude": lat, "longitude": lon})
    pd.DataFrame(rows).to_parquet(os.path.join(d, "photos.parquet"))
    order, sizes = ["coarse", "fine"], {"coarse": 60, "fine": 400}
    cells = pd.concat([pd.DataFrame({"partitioning": p, "class": np.arange(k), "token": [f"{p}{i}" for i in range(k)],
                                     "count": rng.integers(1, 100, k), "mean_lat": rng.uniform(-60, 70, k),
                                     "mean_lon": rng.uniform(-180, 180, k)}) for p, k in sizes.items()])
    for name, (backbone, size) in RUNS.items():
        with commit.building(Lake(os.path.join(d, "lake")), f"models/{name}") as out:
            _save_run(out, backbone, size, sizes, cells, order, rng)
    open(os.path.join(d, "ready"), "w").close()


def _save_run(out: str, backbone: str, size: int, sizes: dict, cells, order: list[str], rng) -> None:
    """A run's folder: an untrained model of the backbone, its cells, hierarchy and summary."""
    import keras
    import pandas as pd

    from deeploc.learn import model

    keras.utils.set_random_seed(0)
    model.build(backbone, size, sizes).save(os.path.join(out, "model.keras"))
    cells.to_parquet(os.path.join(out, "cells.parquet"))
    pd.DataFrame({"fine": np.arange(400), "coarse": rng.integers(0, 60, 400)}).to_parquet(
        os.path.join(out, "hierarchy.parquet"))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"order": order, "profile": {"input_size": size, "backbone": backbone}, "image_set": "full",
                   "split_rule": {"by": "photo"}}, f)


def stage(d: str, run: str, master: str) -> dict:
    os.environ["DEEPLOC_SPARK_MASTER"] = master
    from deeploc.sources.bucket import Bucket
    from deeploc.spark import session
    from deeploc.stages import infer

    session("bench-infer")
    args = (os.path.join(d, "lake"), Bucket(os.path.join(d, "bucket")), run)
    infer.run(*args, photos=os.path.join(d, "photos.parquet"))  # warm-up: workers start, models load
    rates = []
    for _ in range(3):
        t0 = time.monotonic()
        ledger = infer.run(*args, photos=os.path.join(d, "photos.parquet"))
        rates.append(ledger["out"] / (time.monotonic() - t0))
    return {"images": ledger["out"], "per_second": statistics.median(rates), "runs": rates}


def bare(d: str, run: str) -> dict:
    import pandas as pd
    import tensorflow as tf

    from deeploc.learn.predict import Predictor
    from deeploc.sources import images
    from deeploc.sources.bucket import Bucket

    tf.config.threading.set_intra_op_parallelism_threads(2)
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    pred = Predictor.load(commit.current(Lake(os.path.join(d, "lake")), f"models/{run}"))
    bucket, side = Bucket(os.path.join(d, "bucket")), images.eval_side(pred.input_size)
    keys = pd.read_parquet(os.path.join(d, "photos.parquet"))["object_key"]
    batch = np.stack([pred.prepare(images.read_rgb(bucket, k, min_side=side))[0] for k in keys])
    pred.probabilities(batch[:BATCH])  # warm-up
    t0 = time.monotonic()
    for i in range(0, len(batch), BATCH):
        pred.probabilities(batch[i:i + BATCH])
    return {"images": len(batch), "per_second": len(batch) / (time.monotonic() - t0),
            "model": RUNS[run][0], "input": RUNS[run][1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--make")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--dir")
    ap.add_argument("--run")
    ap.add_argument("--bare")
    ap.add_argument("--master", default="local[2]")
    a = ap.parse_args()
    if a.make:
        make(a.make, a.images)
        print(json.dumps({"made": a.make}))
    elif a.bare:
        print(json.dumps(bare(a.dir, a.bare)))
    else:
        print(json.dumps(stage(a.dir, a.run, a.master)))


if __name__ == "__main__":
    main()
