"""The measured part of the commit benchmark, on a moto S3 server with its Glue catalog: publishing one
slice of a table (12 months, several files a month), first and again (a rerun replaces it), by

- the Iceberg commit the stages make now (``deeploc.storage.catalog.commit``: a footer read per new file, the
  manifests, the metadata file, one Glue update), and
- the copy-based publish the lake used before (re-implemented here as it was: every staged object
  copied server-side into the month's folder and deleted, the month's old objects copied to a trash
  folder and deleted first).

Both start from the same files already written by the job (Spark's part), so the figures are the cost
of making a slice current, nothing else.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor


def write_files(lake, prefix: str, months: list[str], per_month: int, rows: int) -> list[str]:
    """Parquet files of made-up rows (``rows`` a file) under ``prefix``, by month; their locations."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng, out = np.random.default_rng(0), []
    for month in months:
        for part in range(per_month):
            ids = rng.integers(0, 2**62, rows)
            table = pa.table({"photo_id": ids, "title": [f"photo {i:x} of a place" for i in ids],
                              "latitude": rng.uniform(-90, 90, rows), "upload_month": [month] * rows})
            buf = io.BytesIO()
            pq.write_table(table, buf)
            out.append(f"{prefix}/upload_month={month}/part-{part}.parquet")
            lake.write_bytes(out[-1], buf.getvalue())
    return out


def copy_publish(lake, staged: list[str], table: str) -> None:
    """The old protocol: per month, move the current objects to trash, move the staged ones in, drop the trash."""
    fs = lake.fs
    by_month: dict[str, list[str]] = {}
    for f in staged:
        by_month.setdefault(f.split("upload_month=")[1].split("/")[0], []).append(f)

    def move(src: str, dst: str) -> None:
        files = [lake.fs_path(f) for f in lake.files(src)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda f: fs.copy_file(f, lake.fs_path(dst) + f[len(lake.fs_path(src)):]), files))
        lake.delete(src)

    for month, files in sorted(by_month.items()):
        final = lake.path(table, f"upload_month={month}")
        trash = lake.path(table, f"_trash-{month}")
        if lake.exists(final):
            move(final, trash)
        move(files[0].rsplit("/", 1)[0], final)
        lake.delete(trash)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-month", type=int, default=4)
    ap.add_argument("--rows", type=int, default=20_000, help="rows a file")
    a = ap.parse_args()
    import boto3
    import pyarrow.parquet as pq

    from deeploc.storage import catalog
    from tests import moto_s3  # the test suite's moto server (not shipped in the package)
    from deeploc.storage.lake import Lake
    from deeploc.storage.slice_io import months as month_filter
    from deeploc.storage.slices import Slice

    server, url = moto_s3.start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL": url})
    boto3.client("s3").create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    lake = Lake("s3://lake/root")
    out = {"files": 12 * a.per_month, "rows": 12 * a.per_month * a.rows}
    # 2009 first, not timed: the tables exist and each way has run once in this process (a backfill's
    # runs meet a table that exists); then 2010 is published, and published again.
    for year, attempt in ((2009, "warm-up"), (2010, "first"), (2010, "again")):
        months, sl = [f"{year}-{m:02d}" for m in range(1, 13)], Slice.of(f"{year}-01-01", f"{year + 1}-01-01")
        staged = write_files(lake, lake.path("old", f"_staging-{year}-{attempt}"), months, a.per_month, a.rows)
        out["bytes"] = sum(lake.fs.get_file_info(lake.fs_path(f)).size for f in staged)
        t0 = time.monotonic()
        copy_publish(lake, staged, "old")
        out[f"copy_{attempt}_s"] = time.monotonic() - t0
        new = write_files(lake, catalog.new_data_folder(lake, "new"), months, a.per_month, a.rows)
        schema = pq.read_schema(lake.open_input(new[0]))
        t0 = time.monotonic()
        catalog.commit(lake, "new", new, month_filter(sl), ("upload_month",), schema)
        out[f"iceberg_{attempt}_s"] = time.monotonic() - t0
    server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
