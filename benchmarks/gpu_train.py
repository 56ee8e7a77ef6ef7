"""GPU training throughput, ready for the ``device`` tool's machine (not run where there is no GPU):
the mp16 profile's recipe (ResNet-50 at 224 px, SGD with weight decay, batch 128, mixed precision) with
the reference's class counts (3,298 / 7,202 / 12,893), fed by the real input pipeline from JPEG shards
with the reference augmentation.

    python -m benchmarks.gpu_train [--images 20000] [--batch 128] [--steps 200] [--out gpu.json]

The shards are built fast from realistic photos: ``DISTINCT`` rendered scenes (the demo's renderer, at
640x480 like Flickr's medium size), each resized and JPEG-encoded once as the shards stage does, then
written under many photo ids (decoding a record costs what a real one does). It trains ``--steps``
steps after a warm-up and reports images/s, the GPU's busy share (nvidia-smi, sampled every 0.5 s) and
how long each step waited for its input (time in the iterator's next() against the whole step).
The report's reference: ~7.6 images/s on one T4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time

import numpy as np


DISTINCT = 256
CLASSES = {"coarse": 3298, "medium": 7202, "fine": 12893}  # the reference's MP-16 partitionings


def write_shards(folder: str, n: int, outputs: dict[str, int], per_shard: int = 2000) -> list[str]:
    import tensorflow as tf
    from PIL import Image

    from deeploc.demo.render import render_scene
    from deeploc.sources import images
    from deeploc.learn.tfrecord import example

    rng, files = np.random.default_rng(0), []
    jpegs = [images.encode_jpeg(images.resize_short(np.asarray(Image.fromarray(
        render_scene(rng.uniform(-60, 70), rng.uniform(-180, 180), rng, 512)).resize((640, 480))), 320))
        for _ in range(DISTINCT)]
    for s in range(0, n, per_shard):
        path = os.path.join(folder, f"part-{s // per_shard:04d}.tfrecord")
        with tf.io.TFRecordWriter(path) as w:
            for i in range(s, min(n, s + per_shard)):
                w.write(example(jpegs[i % DISTINCT], i, {o: int(rng.integers(0, k)) for o, k in outputs.items()}))
        files.append(path)
    return files


def gpu_busy(samples: list, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout.split()
            samples.append(float(out[0]))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out")
    a = ap.parse_args()
    import tensorflow as tf

    from deeploc.learn import model, profiles, training_data

    prof = profiles.get("mp16")
    devices = model.configure_devices()
    tmp = tempfile.mkdtemp(prefix="gpu-bench-")
    t0 = time.monotonic()
    files = write_shards(tmp, a.images, CLASSES)
    made = time.monotonic() - t0
    ds = training_data.epoch(training_data.Source(list(CLASSES), files=files), prof.input_size, a.batch, 1, 0).repeat()
    net = model.compile_model(model.build(prof.backbone, prof.input_size, CLASSES, None), list(CLASSES),
                              model.optimizer(prof.optimizer, prof.learning_rate, prof.weight_decay))
    it = iter(ds)
    for _ in range(10):  # warm-up: tracing, cuDNN autotuning
        net.train_on_batch(*next(it))
    samples, stop = [], threading.Event()
    watcher = threading.Thread(target=gpu_busy, args=(samples, stop), daemon=True)
    watcher.start()
    waited, t0 = 0.0, time.monotonic()
    for _ in range(a.steps):
        w0 = time.monotonic()
        batch = next(it)
        waited += time.monotonic() - w0
        net.train_on_batch(*batch)
    total = time.monotonic() - t0
    stop.set()
    result = {"devices": devices, "images_per_second": a.steps * a.batch / total, "batch": a.batch,
              "steps": a.steps, "input_wait_share": waited / total, "shards_written_s": made,
              "gpu_busy_percent_mean": float(np.mean(samples)) if samples else None,
              "vs_report_t4": a.steps * a.batch / total / 7.6, "backbone": prof.backbone, "classes": CLASSES,
              "tensorflow": tf.__version__}
    print(json.dumps(result, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
