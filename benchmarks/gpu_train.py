"""GPU training throughput, ready for the ``device`` tool's machine (not run where there is no GPU):
ResNet101V2 at 224 px with mixed precision, fed by the real input pipeline from shards.

    python -m benchmarks.gpu_train [--images 20000] [--batch 128] [--steps 200] [--out gpu.json]

It writes synthetic shards (random pixels: decoding costs the same as for real ones, the network's
work does not depend on the content), trains for ``--steps`` steps after a warm-up, and reports
images/s, the GPU's busy share (nvidia-smi, sampled every 0.5 s) and how long each step waited for
its input (time in the iterator's next() against the whole step). The report's reference: ~7.6
images/s on one T4; the target: more than 100x that.
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


def write_shards(folder: str, n: int, side: int, outputs: dict[str, int], per_shard: int = 1000) -> list[str]:
    import tensorflow as tf

    from deeploc.stages.shards import serialize

    rng, files = np.random.default_rng(0), []
    for s in range(0, n, per_shard):
        path = os.path.join(folder, f"part-{s // per_shard:04d}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, "GZIP") as w:
            for i in range(s, min(n, s + per_shard)):
                img = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                w.write(serialize(img, i, {o: int(rng.integers(0, k)) for o, k in outputs.items()}))
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

    from deeploc import model, training_data

    devices = model.configure_devices()
    outputs = {"coarse": 1024, "medium": 2428, "fine": 4103}  # the report's partitionings
    tmp = tempfile.mkdtemp(prefix="gpu-bench-")
    t0 = time.monotonic()
    files = write_shards(tmp, a.images, 336, outputs)
    made = time.monotonic() - t0
    ds = training_data.from_shards(files, list(outputs), 336, 224, a.batch, True, 1).repeat()
    net = model.compile_model(model.build("ResNet101V2", 224, outputs, None), list(outputs), 1e-4)
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
              "vs_report_t4": a.steps * a.batch / total / 7.6, "tensorflow": tf.__version__}
    print(json.dumps(result, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
