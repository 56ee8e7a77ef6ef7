"""Row accounting: every stage run records what came in, went out and was rejected, by reason, in
``_ledgers/<stage>/<scope>.json`` (scope: the slice, the model run, ...), and fails when the numbers
do not add up, before anything is swapped into place.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)


class LedgerError(RuntimeError):
    """Rows entered a stage and neither left in its output nor in its rejects."""


def file_rows(lake: Lake, files: list[str]) -> dict[str, int]:
    """Rows in each of these Parquet files, read from their footers (no data, no Spark job; in parallel:
    on S3 each footer is a request)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    def rows(f):
        with lake.open_input(f) as handle:
            return pq.ParquetFile(handle).metadata.num_rows

    with ThreadPoolExecutor(16) as pool:
        return dict(zip(files, pool.map(rows, files)))


def footer_rows(lake: Lake, files: list[str]) -> int:
    """Rows in these Parquet files, from their footers."""
    return sum(file_rows(lake, files).values())


def record(lake: Lake, stage: str, scope: str, rows_in: int, rows_out: int, rejects: dict[str, int],
           **extra) -> dict:
    """Write the ledger and raise ``LedgerError`` if in != out + rejected."""
    rejects = {k: int(v) for k, v in sorted(rejects.items())}
    entry = {"stage": stage, "scope": scope, "in": int(rows_in), "out": int(rows_out),
             "rejected": sum(rejects.values()), "rejects": rejects,
             "written_at": datetime.now(timezone.utc).isoformat(), **extra}
    lake.write_json(location(stage, scope), entry)
    summary = ", ".join(f"{k}={v}" for k, v in rejects.items()) or "none"
    log.info("%s [%s]: in=%d out=%d rejected=%d (%s)", stage, scope, rows_in, rows_out, entry["rejected"], summary)
    if entry["in"] != entry["out"] + entry["rejected"]:
        raise LedgerError(f"{stage} [{scope}]: {rows_in} rows in != {rows_out} out + {entry['rejected']} rejected")
    return entry


def read(lake: Lake, stage: str, scope: str) -> dict | None:
    rel = location(stage, scope)
    return lake.read_json_or_none(rel)


def location(stage: str, scope: str) -> str:
    """Where a ledger lives, relative to the lake root."""
    return f"_ledgers/{stage}/{scope}.json"
