"""The measured part of the input benchmark, each on one core: the training input pipeline from the
JPEG shards with the reference augmentation, the same straight from the images, and the limit: a bare
loop that decodes the shards' JPEGs (held in memory) with Pillow, takes the same random-resized crop,
resizes it and flips it. Also the shards' bytes a photo, on these photos and on natural photos
(scikit-image's sample photographs), against the raw pixels the shards used to hold.

    python -m benchmarks.input_job --make DIR --images N     (a bucket of N 640x480 JPEGs, its lake and shards)
    python -m benchmarks.input_job --measure shards|images|bare|bytes --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

INPUT = 224  # the yfcc profile's input; its shards hold 320 px (shorter side)
NATURAL = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")  # scikit-image's colour photographs


def make(out: str, n: int, seed: int = 5) -> None:
    import pandas as pd
    from PIL import Image

    from deeploc.demo.render import render_scene
    from deeploc.sources import yfcc
    from deeploc.sources.bucket import Bucket
    from deeploc.sources.images import encode_jpeg
    from deeploc.stages import shards
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

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


def _shard_jpegs(shard_dir: str, files: list[str]) -> list[bytes]:
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)["image"].numpy()
            for r in tf.data.TFRecordDataset([os.path.join(shard_dir, f) for f in files])]


def bare_loop(jpegs: list[bytes]) -> float:
    """Images/s of decode + RandomResizedCrop (area 0.66-1, aspect 3/4-4/3) + resize + flip in Python."""
    import io

    from PIL import Image

    from deeploc.learn.training_data import AREA, ASPECT

    rng = np.random.default_rng(0)
    t0 = time.monotonic()
    for data in jpegs:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        area, ratio = rng.uniform(*AREA) * w * h, np.exp(rng.uniform(*np.log(ASPECT)))
        cw, ch = min(w, round(np.sqrt(area * ratio))), min(h, round(np.sqrt(area / ratio)))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        out = np.asarray(img.crop((x, y, x + cw, y + ch)).resize((INPUT, INPUT), Image.BILINEAR))
        if rng.random() < 0.5:
            out = out[:, ::-1]
    return len(jpegs) / (time.monotonic() - t0)


def natural_bytes() -> dict:
    """JPEG and raw bytes of natural photos at the shards' 320 px."""
    import skimage.data

    from deeploc.sources import images

    jpeg, raw = [], []
    for name in NATURAL:
        small = images.resize_short(getattr(skimage.data, name)(), 320)
        jpeg.append(len(images.encode_jpeg(small)))
        raw.append(small.size)
    return {"photos": len(NATURAL), "jpeg_kb": float(np.mean(jpeg)) / 1e3, "raw_kb": float(np.mean(raw)) / 1e3}


def measure(kind: str, d: str) -> dict:
    import pandas as pd

    from deeploc.learn import training_data
    from deeploc.sources.bucket import Bucket
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    lake = Lake(os.path.join(d, "lake"))
    shard_dir = commit.current(lake, "shards/full")
    index = json.load(open(os.path.join(shard_dir, "index.json")))
    files = [e["file"] for e in index["splits"]["train"]]
    if kind == "bytes":
        records = sum(e["records"] for s in index["splits"].values() for e in s)
        size = sum(os.path.getsize(os.path.join(shard_dir, e["file"])) for s in index["splits"].values() for e in s)
        return {"records": records, "kb_per_photo": size / records / 1e3, "natural": natural_bytes()}
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if kind == "bare":
        jpegs = _shard_jpegs(shard_dir, files)
        return {"images": len(jpegs), "per_second": bare_loop(jpegs)}
    if kind == "shards":
        source = training_data.Source(["coarse", "fine"], files=[os.path.join(shard_dir, f) for f in files])
    else:
        photos = pd.read_parquet(os.path.join(commit.current(lake, "partitionings/full"), "photos.parquet"))
        source = training_data.Source(["coarse", "fine"], photos=photos[photos["split"] == "train"],
                                      bucket=Bucket(os.path.join(d, "bucket")), short_side=320)
    ds = training_data.epoch(source, INPUT, 64, 1, 0)
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
    ap.add_argument("--measure", choices=("shards", "images", "bare", "bytes"))
    ap.add_argument("--dir")
    a = ap.parse_args()
    if a.make:
        make(a.make, a.images)
        print(json.dumps({"made": a.make}))
    else:
        print(json.dumps(measure(a.measure, a.dir)))


if __name__ == "__main__":
    main()
