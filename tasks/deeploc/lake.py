"""The lake: table paths, upload-time slices, atomic slice replacement and the per-run ledger.

Tables written by the ingestion stages are partitioned by ``upload_month`` (``YYYY-MM``). A run for a
data interval replaces exactly the months of its interval, one partition folder at a time by rename,
so a reader always sees each month either wholly old or wholly new, reruns never duplicate rows, and a
run killed halfway is repaired by the next one. Rows whose upload time cannot be read live in the
partition ``upload_month=unknown``; every run rewrites it whole from the same input, so it too is
idempotent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
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


def filesystem(uri: str):
    """(pyarrow file system, path on it) for a local path or a URI such as ``s3://bucket/key``.
    S3 takes region and credentials from the environment or the instance role, and
    ``AWS_ENDPOINT_URL`` for S3-compatible stores (moto in the tests)."""
    from pyarrow import fs

    if "://" in uri:
        return fs.FileSystem.from_uri(uri)
    return fs.LocalFileSystem(), os.path.abspath(uri)


class Lake:
    """A lake root: a local folder (the ``local`` target) or ``s3://bucket/prefix`` (the ``aws`` target).

    ``path`` gives locations Spark reads and writes directly (EMR reads ``s3://`` natively). Everything
    else goes through the methods here, on a pyarrow file system, so stages never touch ``os`` for
    lake files. On a local folder a swap is two renames. S3 has no rename: the old copy is deleted,
    then the new one is copied in server-side, so a reader may briefly find a partition missing
    (never mixed); a run killed in between is repaired by the next, which rewrites it whole.
    """

    def __init__(self, root: str):
        self.remote = root.startswith("s3://")
        self.fs, base = filesystem(root.rstrip("/") if self.remote else root)
        self.root = f"s3://{base}" if self.remote else base

    def __reduce__(self):  # Spark tasks get the root and open their own file system
        return Lake, (self.root,)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.remote else os.path.join(self.root, *parts)

    def _fs(self, uri: str) -> str:
        return uri[5:] if uri.startswith("s3://") else uri

    def _info(self, uri: str):
        return self.fs.get_file_info(self._fs(uri))

    def exists(self, uri: str) -> bool:
        from pyarrow import fs

        return self._info(uri).type != fs.FileType.NotFound

    def mtime(self, uri: str) -> float | None:
        """Seconds since the epoch of a file's last change; None when it does not exist."""
        from pyarrow import fs

        info = self._info(uri)
        return info.mtime.timestamp() if info.type != fs.FileType.NotFound and info.mtime is not None else None

    def listdir(self, uri: str) -> list[str]:
        """Names directly under ``uri``; [] when it does not exist."""
        from pyarrow import fs

        sel = fs.FileSelector(self._fs(uri), allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel))

    def files(self, uri: str, suffix: str = "") -> list[str]:
        """Every file under ``uri`` (recursively) ending in ``suffix``, as file-system paths."""
        from pyarrow import fs

        sel = fs.FileSelector(self._fs(uri), recursive=True, allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(sel)
                      if i.type == fs.FileType.File and i.base_name.endswith(suffix))

    def uri(self, fs_path: str) -> str:
        """A path from ``files`` as Spark names it (s3:// again on S3)."""
        return f"s3://{fs_path}" if self.remote else fs_path

    def rmtree(self, uri: str) -> None:
        if self.exists(uri):
            self.fs.delete_dir(self._fs(uri))

    def move(self, src: str, dst: str) -> None:
        """Move a folder (or file). Local: one rename. S3: server-side copies, then the source goes."""
        if not self.remote:
            os.replace(src, dst)
            return
        from concurrent.futures import ThreadPoolExecutor

        src_fs, dst_fs = self._fs(src).rstrip("/"), self._fs(dst).rstrip("/")
        files = self.files(src) or [src_fs]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda f: self.fs.copy_file(f, dst_fs + f[len(src_fs):]), files))
        self.rmtree(src) if len(files) > 1 or files[0] != src_fs else self.fs.delete_file(src_fs)

    def read_bytes(self, uri: str) -> bytes:
        # compression=None: bytes as stored (pyarrow would otherwise decode a name ending .gz / .bz2)
        with self.fs.open_input_stream(self._fs(uri), compression=None) as f:
            return f.read()

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write a whole file; readers see the old or the new content, never a part."""
        if self.remote:  # an S3 PUT is atomic
            with self.fs.open_output_stream(self._fs(uri), compression=None) as f:
                f.write(data)
            return
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        tmp = f"{uri}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, uri)

    def read_parquet(self, uri: str, **kw):
        """A Parquet file or folder as a pandas DataFrame."""
        import pyarrow.parquet as pq

        return pq.read_table(self._fs(uri), filesystem=self.fs, **kw).to_pandas()

    def dataset(self, uri: str, **kw):
        import pyarrow.dataset as ds

        return ds.dataset(self._fs(uri), filesystem=self.fs, **kw)

    def staging(self, table: str) -> str:
        """A fresh hidden folder (readers skip names starting with ``_``) beside ``table``."""
        return self.path(table, f"_staging-{uuid.uuid4().hex[:12]}")

    def replace_slice(self, table: str, staged: str, months: list[str], with_unknown: bool) -> None:
        """Swap in the staged partitions of ``months`` (and ``unknown``); drop months that got no rows."""
        base = self.path(table)
        for old in self.listdir(base):
            if old.startswith(("_staging-", "_trash-")) and self.path(table, old) != staged:
                self.rmtree(self.path(table, old))  # left by a killed run
        targets = months + ([UNKNOWN] if with_unknown else [])
        staged_parts = {d.split("=", 1)[1] for d in self.listdir(staged) if d.startswith(PARTITION + "=")}
        unexpected = staged_parts - set(targets)
        if unexpected:
            raise RuntimeError(f"{table}: staged rows outside the slice: {sorted(unexpected)[:5]}")
        for month in targets:
            part = f"{PARTITION}={month}"
            # The old partition goes to a hidden name inside the table, which readers skip.
            self.swap_in(f"{staged}/{part}" if month in staged_parts else None, self.path(table, part),
                         trash=self.path(table, f"_trash-{uuid.uuid4().hex[:12]}"))
        self.rmtree(staged)

    def temp_beside(self, final: str) -> str:
        """A fresh location next to ``final`` to build a whole output in before ``swap_in``."""
        tmp = f"{final.rstrip('/')}.tmp-{uuid.uuid4().hex[:12]}"
        if not self.remote:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
        return tmp

    def swap_in(self, tmp: str | None, final: str, trash: str | None = None) -> None:
        """Replace ``final`` by the finished ``tmp`` (None: just remove ``final``). Locally two renames,
        so ``final`` is never half-written and is missing only for the instant between them; the old
        copy goes to ``trash`` (default: beside ``final``) and is then deleted. On S3 see the class."""
        if self.remote:
            self.rmtree(final)
            if tmp is not None:
                self.move(tmp, final)
            return
        trash = trash or f"{final.rstrip('/')}.old-{uuid.uuid4().hex[:12]}"
        if os.path.exists(final):
            os.rename(final, trash)
        if tmp is not None:
            os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def building(self, rel: str):
        """Yield a local folder to write a whole output in; on success it replaces ``rel``.
        Locally the folder sits beside ``rel`` (one rename); for S3 it is uploaded, then swapped in."""
        final = self.path(rel)
        if not self.remote:
            tmp = self.temp_beside(final)
            os.makedirs(tmp)
            try:
                yield tmp
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self.swap_in(tmp, final)
            return
        from pyarrow import fs

        with tempfile.TemporaryDirectory(prefix="deeploc-") as local:
            yield local
            remote_tmp = self.temp_beside(final)
            fs.copy_files(local, self._fs(remote_tmp), destination_filesystem=self.fs, use_threads=True)
            self.swap_in(remote_tmp, final)

    def local_copy(self, rel: str, dest: str | None = None) -> str:
        """A local folder holding ``rel``: the folder itself for a local lake, else a download."""
        if not self.remote:
            return self.path(rel)
        from pyarrow import fs

        dest = dest or tempfile.mkdtemp(prefix="deeploc-")
        fs.copy_files(self._fs(self.path(rel)), dest, source_filesystem=self.fs, use_threads=True)
        return dest

    def partitions(self, table: str) -> list[str]:
        return [d for d in self.listdir(self.path(table)) if d.startswith(PARTITION + "=")]

    def write_json(self, rel: str, obj) -> str:
        path = self.path(rel)
        self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())
        return path

    def read_json(self, rel: str):
        return json.loads(self.read_bytes(self.path(rel)))


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
