"""The measured part of the faces benchmark: the stage against a bare loop over the same images."""

from __future__ import annotations

import argparse
import json
import statistics
import time


def bare_loop(bucket_root: str, keys: list[str]) -> float:
    """Images per second of read + decode + cascade in one plain Python loop (one core)."""
    from deeploc.sources import facedetect, images
    from deeploc.sources.bucket import Bucket

    bucket = Bucket(bucket_root)
    facedetect.cascade()  # loaded before timing, as each Spark worker loads it once
    t0 = time.monotonic()
    for key in keys:
        try:
            facedetect.face_ratio(images.decode(bucket.read(key)))
        except images.Unreadable:
            pass
    return len(keys) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--mode", choices=("bare", "stage"), required=True)
    ap.add_argument("--repeats", type=int, default=3, help="timed stage runs after the warm-up")
    a = ap.parse_args()
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake

    keys = catalog.read(Lake(a.lake), "images", ["object_key"])[0]["object_key"].tolist()
    if a.mode == "bare":
        print(json.dumps({"images": len(keys), "per_second": bare_loop(a.bucket, keys)}))
        return
    from deeploc.spark import session
    from deeploc.stages import faces

    session("bench-faces")
    faces.run(a.lake, a.bucket)  # warm-up: Python workers started, cascade loaded
    rates = []
    for _ in range(a.repeats):
        t0 = time.monotonic()
        ledger = faces.run(a.lake, a.bucket)
        rates.append(ledger["in"] / (time.monotonic() - t0))
    print(json.dumps({"images": ledger["in"], "per_second": statistics.median(rates), "runs": rates}))


if __name__ == "__main__":
    main()
