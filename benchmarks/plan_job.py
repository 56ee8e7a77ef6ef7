"""The plan at the reference scale: a faces table of millions of photos spread like Flickr's (GeoNames
places, population-weighted, ``deeploc.demo.places``) whose images are real camera photos, planned
with the ``yfcc`` and ``mp16`` profiles, and the ``yfcc`` taus on every photo. Prints one JSON line: each plan and how long it took.

The images: crops of scikit-image's bundled photographs (astronaut, cat, coffee, rocket), saved as
JPEG at quality 90 and shared by every row, so the shard bytes the plan measures are those of natural
photos, not of the demo's rendered scenes (which compress far better).

    python -m benchmarks.plan_job --lake DIR --bucket DIR --rows N
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def photo_bucket(bucket: str, n: int = 48, seed: int = 0) -> list[str]:
    """``n`` JPEGs cut from real photographs at random places and sizes; their keys."""
    import cv2
    from skimage import data

    os.makedirs(os.path.join(bucket, "photos"), exist_ok=True)
    rng, keys = np.random.default_rng(seed), []
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = cv2.resize(img[y:y + side, x:x + side], (500, 375) if i % 2 else (375, 500),
                          interpolation=cv2.INTER_AREA)
        keys.append(f"photos/{i:03d}.jpg")
        if not cv2.imwrite(os.path.join(bucket, keys[-1]), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f"could not write {keys[-1]} under {bucket}")
    return keys


def faces_lake(lake: str, keys: list[str], rows: int, seed: int = 5) -> None:
    """A lake whose faces table holds ``rows`` photos (made once)."""
    import pandas as pd

    from deeploc.demo.places import sample_locations
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake

    if catalog.load(Lake(lake), "faces") is not None:
        return
    lat, lon, _ = sample_locations(np.random.default_rng(seed), rows)
    ids = np.arange(rows, dtype=np.int64) * 7 + 11
    users = rows // 40  # ~40 photos a user; splits go by user
    catalog.write_frame(Lake(lake), "faces", pd.DataFrame({
        "photo_id": ids, "object_key": np.array(keys, dtype=object)[ids % len(keys)], "latitude": lat,
        "longitude": lon, "face_ratio": 0.0, "title": "", "page_url": "", "license_name": "", "license_url": "",
        "user_nsid": pd.Series(ids % users).map("u{}".format), "user_nickname": "",
        "upload_month": np.where(ids % 2 == 0, "2010-01", "2010-02")}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--rows", type=int, required=True)
    a = ap.parse_args()

    from deeploc import aws_config, plan
    from deeploc.sources.bucket import Bucket
    from deeploc.storage.lake import Lake

    keys = photo_bucket(a.bucket)
    t0 = time.monotonic()
    faces_lake(a.lake, keys, a.rows)
    made = time.monotonic() - t0
    out = {"rows": a.rows, "lake_s": made, "plans": {}}
    # The report's experiment, the reference scale, and the report's taus on every photo.
    for name, profile, sample in (("yfcc", "yfcc", None), ("mp16", "mp16", None), ("yfcc, every photo", "yfcc", a.rows)):
        t0 = time.monotonic()
        got = plan.model(Lake(a.lake), Bucket(a.bucket), profile, "local", aws_config.DEFAULTS, max_images=sample)
        out["plans"][name] = {"seconds": time.monotonic() - t0, "plan": got, "text": plan.text(got)}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
