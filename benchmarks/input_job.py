"""The measured part of the input benchmark: the training input pipeline from prepared shards, from the
images directly, and a bare loop that decodes, resizes and crops the same images, each on one core.

    python -m benchmarks.input_job --make DIR --images N     (a bucket of N 512 px JPEGs, its lake and shards)
    python -m benchmarks.input_job --measure shards|images|bare --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

INPUT = 224  # the yfcc profile's input: the squares are 336 px


def make(out: str, n: int, seed: int = 5) -> None:
    import pandas as pd
    from PIL import Image

    from deeploc import commit, yfcc
    from deeploc.bucket import Bucket
    from deeploc.demo.render import encode_jpeg, render_scene
    from deeploc.lake import Lake
    from deeploc.stages import shards

    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(-60, 70, n), rng.uniform(-180, 180, n)
    keys = []
    for i in range(n):  # camera-sized photos: decoding them is the loop's real cost
        key = yfcc.object_key(yfcc.flickr_hash(f"http://bench/{i}.jpg"))
        path = os.path.join(out, "bucket", key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(encode_jpeg(np.asarray(Image.fromarray(render_scene(lat[i], lon[i], rng, 512)).resize((640, 480))), 88))
        keys.append(key)
    split = np.where(np.arange(n) % 5 == 0, "val", "train")
    with commit.building(Lake(os.path.join(out, "lake")), "partitionings/full") as part:
        pd.DataFrame({"photo_id": np.arange(n), "object_key": keys, "split": split,
                      "class_coarse": rng.integers(0, 50, n), "class_fine": rng.integers(0, 400, n)}).to_parquet(
            os.path.join(part, "photos.parquet"))
        with open(os.path.join(part, "report.json"), "w") as f:
            json.dump({"order": ["coarse", "fine"], "profile": "yfcc", "spec": "-", "split_rule": {"by": "photo"}}, f)
    shards.run(os.path.join(out, "lake"), Bucket(os.path.join(out, "bucket")), profile="yfcc")


def measure(kind: str, d: str) -> dict:
    import pandas as pd

    from deeploc import commit, images, training_data
    from deeploc.bucket import Bucket
    from deeploc.lake import Lake

    lake = Lake(os.path.join(d, "lake"))
    photos = pd.read_parquet(os.path.join(commit.current(lake, "partitionings/full"), "photos.parquet"))
    train = photos[photos["split"] == "train"]
    bucket, side = Bucket(os.path.join(d, "bucket")), images.eval_side(INPUT)
    if kind == "bare":
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        for key in train["object_key"]:
            square = images.resize_square(images.decode(bucket.read(key), min_side=side), side)
            y, x = rng.integers(0, side - INPUT + 1, 2)
            square[y:y + INPUT, x:x + INPUT].astype(np.float32)
        return {"images": len(train), "per_second": len(train) / (time.monotonic() - t0)}
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if kind == "shards":
        shard_dir = commit.current(lake, "shards/full")
        index = json.load(open(os.path.join(shard_dir, "index.json")))
        files = [os.path.join(shard_dir, e["file"]) for e in index["splits"]["train"]]
        ds = training_data.from_shards(files, ["coarse", "fine"], side, INPUT, 64, True, 1)
    else:
        ds = training_data.from_images(train, ["coarse", "fine"], bucket, INPUT, 64, True, 1)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = 1  # one core: the bare loop's terms
    ds = ds.with_options(opts)
    for _ in ds.take(2):  # warm-up: graph tracing, file opening
        pass
    n, t0 = 0, time.monotonic()
    for x, _, _ in ds:
        n += int(x.shape[0])
    return {"images": n, "per_second": n / (time.monotonic() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--make")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--measure", choices=("shards", "images", "bare"))
    ap.add_argument("--dir")
    a = ap.parse_args()
    if a.make:
        make(a.make, a.images)
        print(json.dumps({"made": a.make}))
    else:
        print(json.dumps(measure(a.measure, a.dir)))


if __name__ == "__main__":
    main()
