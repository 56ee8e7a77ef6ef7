"""A separate process that writes to a lake, for the concurrency tests (``test_commit.py``).

    python tests/lake_writer.py stages LAKE BUCKET METADATA START END    parse, then the slice's three stages
    python tests/lake_writer.py months LAKE TABLE START END              publish a slice of made-up rows

``months`` writes, for every month of the slice, one Parquet file whose rows are determined by the
month alone, into staging, then publishes the slice: any number of writers, in any order, must leave
each month with exactly those rows.
"""

from __future__ import annotations

import json
import sys


def rows_of(month: str) -> list[str]:
    return [f"{month}/{i}" for i in range(int(month[-2:]))]  # 1 to 12 rows, by the month's number


def months(lake_root: str, table: str, start: str, end: str) -> dict:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from deeploc import commit
    from deeploc.lake import Lake
    from deeploc.slices import Slice

    lake, sl = Lake(lake_root), Slice.of(start, end)
    staged = commit.new_staging(lake, table)
    year = int(start[:4])
    for m in range(1, 13):
        month = f"{year}-{m:02d}"
        buf = io.BytesIO()
        pq.write_table(pa.table({"row": rows_of(month)}), buf)
        lake.write_bytes(f"{staged}/upload_month={month}/part-0.parquet", buf.getvalue())
    commit.publish_months(lake, table, staged, sl)
    return {"slice": sl.name}


def stages(lake: str, bucket: str, metadata: str, start: str, end: str) -> dict:
    from deeploc import cli

    out = {"parse": cli.run(["-q", "parse", "--input", metadata, "--lake", lake])["parsed_now"]}
    for stage in ("metadata", "availability", "faces"):
        extra = ["--bucket", bucket] if stage != "metadata" else []
        ledger = cli.run(["-q", stage, "--lake", lake, "--start", start, "--end", end, *extra])
        out[stage] = {k: ledger[k] for k in ("in", "out", "rejects")}
    return out


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    print(json.dumps({"months": months, "stages": stages}[mode](*args)))
