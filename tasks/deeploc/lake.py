"""The lake: table paths, upload-time slices, atomic slice replacement and the per-run ledger.

Tables written by the ingestion stages are partitioned by ``upload_month`` (``YYYY-MM``). A run for a
data interval replaces exactly the months of its interval, one partition folder at a time by rename,
so a reader always sees each month either wholly old or wholly new, reruns never duplicate rows, and a
run killed halfway is repaired by the next one. Rows whose upload time cannot be read live in the
partition ``upload_month=unknown``; every run rewrites it whole from the same input, so it too is
idempotent.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

log = logging.getLogger(__name__)

PARTITION = "upload_month"
UNKNOWN = "unknown"
# The data set's whole span; a slice without bounds means this.
FIRST_MONTH = datetime(2000, 1, 1, tzinfo=timezone.utc)
LAST_MONTH = datetime(2030, 1, 1, tzinfo=timezone.utc)


def _utc(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Slice:
    """A half-open interval of upload time [start, end), aligned to months; None bounds = all."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, start: str | datetime | None, end: str | datetime | None) -> "Slice":
        s = cls(_utc(start), _utc(end))
        for bound in (s.start, s.end):
            if bound and (bound.day, bound.hour, bound.minute, bound.second, bound.microsecond) != (1, 0, 0, 0, 0):
                raise ValueError(f"slice bounds must be month starts (UTC), got {bound.isoformat()}")
        if s.start and s.end and s.start >= s.end:
            raise ValueError(f"empty slice: {s.start.isoformat()} >= {s.end.isoformat()}")
        return s

    @property
    def label(self) -> str:
        fmt = lambda d, dflt: d.strftime("%Y-%m") if d else dflt  # noqa: E731
        return f"{fmt(self.start, 'begin')}_{fmt(self.end, 'end')}"

    def months(self) -> list[str]:
        cur, end = self.start or FIRST_MONTH, self.end or LAST_MONTH
        out = []
        while cur < end:
            out.append(cur.strftime("%Y-%m"))
            cur = cur.replace(year=cur.year + cur.month // 12, month=cur.month % 12 + 1)
        return out

    def bounds_epoch(self) -> tuple[int, int]:
        return (int((self.start or FIRST_MONTH).timestamp()), int((self.end or LAST_MONTH).timestamp()))


class Lake:
    """A lake root on the local file system (the ``local`` target)."""

    def __init__(self, root: str):
        if root.startswith("s3://"):
            raise ValueError("this build writes the lake on a local path; s3:// lakes run on the aws target")
        self.root = os.path.abspath(root)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def staging(self, table: str) -> str:
        """A fresh hidden folder (readers skip names starting with ``_``) beside ``table``."""
        return self.path(table, f"_staging-{uuid.uuid4().hex[:12]}")

    def replace_slice(self, table: str, staged: str, months: list[str], with_unknown: bool) -> None:
        """Swap in the staged partitions of ``months`` (and ``unknown``); drop months that got no rows."""
        base = self.path(table)
        os.makedirs(base, exist_ok=True)
        for old in glob.glob(os.path.join(base, "_staging-*")) + glob.glob(os.path.join(base, "_trash-*")):
            if os.path.abspath(old) != os.path.abspath(staged):
                shutil.rmtree(old, ignore_errors=True)  # left by a killed run
        targets = months + ([UNKNOWN] if with_unknown else [])
        staged_parts = {d.split("=", 1)[1] for d in os.listdir(staged) if d.startswith(PARTITION + "=")}
        unexpected = staged_parts - set(targets)
        if unexpected:
            raise RuntimeError(f"{table}: staged rows outside the slice: {sorted(unexpected)[:5]}")
        for month in targets:
            src = os.path.join(staged, f"{PARTITION}={month}")
            # The old partition goes to a hidden name inside the table, which readers skip.
            self.swap_in(src if os.path.exists(src) else None, os.path.join(base, f"{PARTITION}={month}"),
                         trash=os.path.join(base, f"_trash-{uuid.uuid4().hex[:12]}"))
        shutil.rmtree(staged, ignore_errors=True)

    @staticmethod
    def temp_beside(final: str) -> str:
        """A fresh folder next to ``final`` to build a whole output in before ``swap_in``."""
        tmp = f"{final.rstrip('/')}.tmp-{uuid.uuid4().hex[:12]}"
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        return tmp

    @staticmethod
    def swap_in(tmp: str | None, final: str, trash: str | None = None) -> None:
        """Replace ``final`` by the finished ``tmp`` (None: just remove ``final``): two renames, so
        ``final`` is never half-written and is missing only for the instant between them. The old
        copy goes to ``trash`` (default: beside ``final``) and is then deleted."""
        trash = trash or f"{final.rstrip('/')}.old-{uuid.uuid4().hex[:12]}"
        if os.path.exists(final):
            os.rename(final, trash)
        if tmp is not None:
            os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)

    def partitions(self, table: str) -> list[str]:
        base = self.path(table)
        if not os.path.isdir(base):
            return []
        return sorted(d for d in os.listdir(base) if d.startswith(PARTITION + "="))

    def write_json(self, rel: str, obj) -> str:
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
        return path

    def read_json(self, rel: str):
        with open(self.path(rel)) as f:
            return json.load(f)


class LedgerError(RuntimeError):
    """Rows entered a stage and neither left in its output nor in its rejects."""


def record_ledger(lake: Lake, stage: str, run: str, rows_in: int, rows_out: int, rejects: dict[str, int],
                  **extra) -> dict:
    """Write ``_ledgers/<stage>/<run>.json`` and fail if in != out + rejects."""
    rejects = {k: int(v) for k, v in sorted(rejects.items())}
    ledger = {"stage": stage, "run": run, "in": int(rows_in), "out": int(rows_out), "rejected": sum(rejects.values()),
              "rejects": rejects, "written_at": datetime.now(timezone.utc).isoformat(), **extra}
    lake.write_json(f"_ledgers/{stage}/{run}.json", ledger)
    summary = ", ".join(f"{k}={v}" for k, v in rejects.items()) or "none"
    log.info("%s [%s]: in=%d out=%d rejected=%d (%s)", stage, run, rows_in, rows_out, ledger["rejected"], summary)
    if ledger["in"] != ledger["out"] + ledger["rejected"]:
        raise LedgerError(f"{stage} [{run}]: {rows_in} rows in != {rows_out} out + {ledger['rejected']} rejected")
    return ledger
