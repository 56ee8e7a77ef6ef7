"""The measured part of the availability benchmark: a moto S3 server with N objects, the stage run
by listing and by per-object HEAD, requests counted at the server (see run.py)."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd


class Counting:
    """WSGI middleware counting requests by HTTP method."""

    def __init__(self, app):
        self.app, self.counts = app, {}

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "?")
        self.counts[method] = self.counts.get(method, 0) + 1
        return self.app(environ, start_response)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--lake", required=True)
    a = ap.parse_args()
    # Signed requests with dummy credentials, set before Spark starts so its workers inherit them.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")

    from moto.s3.models import s3_backends

    from deeploc.sources import yfcc
    from tests import moto_s3  # the test suite's moto server (not shipped in the package)
    from deeploc.sources.bucket import Bucket
    from deeploc.spark import session
    from deeploc.stages import availability

    server, url = moto_s3.start()
    counter = Counting(server._server.app)
    server._server.app = counter

    # Objects straight into moto's in-memory backend (100k PUTs over HTTP would take minutes).
    backend = s3_backends["123456789012"]["global"]
    backend.create_bucket("mmc", "us-west-2")
    rng = np.random.default_rng(0)
    urls = [f"http://farm1.staticflickr.com/1/{i}_x.jpg" for i in range(a.objects)]
    keys = [yfcc.object_key(yfcc.flickr_hash(u)) for u in urls]
    sizes = rng.integers(1500, 3000, a.objects)
    for key, size in zip(keys, sizes):
        backend.put_object("mmc", key, b"x" * int(size))
    meta = pd.DataFrame({"photo_id": np.arange(a.objects, dtype=np.int64), "hash": [k.split("/")[-1][:-4] for k in keys],
                         "object_key": keys, "longitude": 0.0, "latitude": 0.0, "accuracy": 16,
                         "download_url": urls, "upload_time": pd.Timestamp("2010-06-01", tz="UTC"),
                         "date_taken": "", "title": "", "license_name": "", "license_url": "", "page_url": ""})
    folder = os.path.join(a.lake, "metadata", "upload_month=2010-06")
    os.makedirs(folder, exist_ok=True)
    meta.to_parquet(os.path.join(folder, "part-0.parquet"), index=False)

    session("bench-availability")  # started before timing: both runs pay the same
    bucket = Bucket("s3://mmc", endpoint_url=url)
    result = {"objects": a.objects}
    for check in ("list", "head"):
        counter.counts = {}
        t0 = time.monotonic()
        ledger = availability.run(a.lake, bucket, check=check, listing_max_age_hours=0)
        result[check] = {"seconds": time.monotonic() - t0, "requests": dict(counter.counts),
                         "out": ledger["out"], "prefixes": ledger["prefixes"]}
    # Requests a listing needs for 1M rows, from the measured objects per prefix scaled to 1M objects:
    # each prefix costs ceil(objects / 1,000) requests, so small buckets pay the 4,096-prefix floor.
    per_prefix = np.bincount(np.unique([k.split("/")[2] for k in keys], return_inverse=True)[1])
    result["list_requests_at_1m"] = int(np.ceil(per_prefix * (1_000_000 / a.objects) / 1000).sum())
    server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
