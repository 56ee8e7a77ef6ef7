"""Separate processes that write to or read from a lake, for the concurrency tests (``test_commit.py``;
its sequential tests call ``months`` in their own process).

    python tests/lake_writer.py stages LAKE BUCKET METADATA START END [START END ...]
                                                                         parse, then each slice's three stages
    python tests/lake_writer.py months LAKE TABLE START END [FILES] [TOGETHER]   commit a slice of made-up rows
    python tests/lake_writer.py watch LAKE TABLE UNTIL                   read the table in a loop until UNTIL exists

``months`` writes, for every month of the slice, Parquet files whose rows are determined by the month
alone (``FILES`` files per month, default 1) into a data folder of its own, prints ``committing`` and
commits the slice: any number of writers, in any order, must leave each month with exactly those rows.
With ``TOGETHER`` n > 1 it commits only once n writers are ready (files in ``LAKE.ready/``), and its
first try goes to the catalog only once all n have built theirs on the table's state of that moment
(``LAKE.built/``): all but one of those tries must lose the race, whatever the machine's load.
``watch`` prints, for each read, the rows it saw per year.
"""

from __future__ import annotations

import json
import os
import sys
import time


def rows_of(month: str) -> list[str]:
    return [f"{month}/{i}" for i in range(int(month[-2:]))]  # 1 to 12 rows, by the month's number


def months(lake_root: str, table: str, start: str, end: str, files: str = "1", together: str = "1") -> dict:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake
    from deeploc.storage.slice_io import months as month_filter
    from deeploc.storage.slices import Slice

    lake, sl = Lake(lake_root), Slice.of(start, end)
    folder, written = catalog.new_data_folder(lake, table), []
    schema = pa.schema([("row", pa.string()), ("upload_month", pa.string())])
    year = int(start[:4])
    for m in range(1, 13):
        month = f"{year}-{m:02d}"
        rows = rows_of(month)
        for part in range(int(files)):
            mine = rows[part::int(files)]
            buf = io.BytesIO()
            pq.write_table(pa.table({"row": mine, "upload_month": [month] * len(mine)}, schema=schema), buf)
            written.append(f"{folder}/upload_month={month}/part-{part}.parquet")
            lake.write_bytes(written[-1], buf.getvalue())
    if int(together) > 1:
        _wait_for_each_other(f"{lake_root}.ready", sl.name, int(together))
        _hold_the_first_try(f"{lake_root}.built", sl.name, int(together))
    print("committing", flush=True)
    done = catalog.commit(lake, table, written, month_filter(sl), ("upload_month",), schema, {"scope": sl.name})
    return {"slice": sl.name, **done}


def _wait_for_each_other(folder: str, me: str, count: int, timeout_s: float = 300) -> None:
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, me), "w").close()
    deadline = time.monotonic() + timeout_s
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {os.listdir(folder)} of {count} writers ready")
        time.sleep(0.01)


def _hold_the_first_try(folder: str, me: str, count: int) -> None:
    """This process's first Iceberg transaction waits, built, until ``count`` writers hold theirs."""
    from pyiceberg.table import Transaction

    send, held = Transaction.commit_transaction, []

    def send_with_the_others(self):
        if not held:
            held.append(True)
            _wait_for_each_other(folder, me, count)
        return send(self)

    Transaction.commit_transaction = send_with_the_others


def watch(lake_root: str, table: str, until: str, timeout_s: float = 300) -> dict:
    """Read the table in a loop until the file ``until`` exists, then once more (after every writer)."""
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake

    lake, seen, end = Lake(lake_root), [], time.monotonic() + timeout_s
    while True:
        last = os.path.exists(until)
        tbl = catalog.load(lake, table)
        if tbl is not None and tbl.current_snapshot() is not None:  # created, and committed to once
            rows = catalog.read(lake, table, ["upload_month"])[0]
            seen.append(rows["upload_month"].str[:4].value_counts().to_dict())
        if last:
            return {"reads": seen}
        if time.monotonic() > end:
            raise TimeoutError(f"{until} did not appear in {timeout_s} s")


def stages(lake: str, bucket: str, metadata: str, *bounds: str) -> dict:
    """Parse, then each slice (START END pairs) through its three stages, one after the other."""
    from deeploc import cli

    out = {"parse": cli.run(["-q", "parse", "--input", metadata, "--lake", lake])["parsed_now"], "slices": []}
    for start, end in zip(bounds[::2], bounds[1::2]):
        done = {}
        for stage in ("metadata", "availability", "faces"):
            extra = ["--bucket", bucket] if stage != "metadata" else []
            ledger = cli.run(["-q", stage, "--lake", lake, "--start", start, "--end", end, *extra])
            done[stage] = {k: ledger[k] for k in ("in", "out", "rejects")}
        out["slices"].append(done)
    return out


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # the commits' own account (retries) on stderr
    mode, *args = sys.argv[1:]
    print(json.dumps({"months": months, "stages": stages, "watch": watch}[mode](*args)))
