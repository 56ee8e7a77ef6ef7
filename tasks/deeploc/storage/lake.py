"""The lake root and its storage primitives: a local folder (the ``local`` target) or
``s3://bucket/prefix`` (the ``aws`` target), behind one interface.

Locations handed around are strings as Spark names them: absolute local paths, or ``s3://`` URIs.
Everything stages do to lake files goes through ``Lake`` (on a pyarrow file system), so a stage is
written once for both. Tables live in an Iceberg catalog (``deeploc.storage.catalog``); how a folder output
becomes current is ``deeploc.storage.commit``; row accounting is ``deeploc.storage.ledger``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid

from deeploc.storage.uris import filesystem, is_s3, split_s3

log = logging.getLogger(__name__)
# How long an S3 lock outlives a holder that stopped renewing it (see _S3Store.lock).
LEASE_S = 120.0


class Lake:
    def __init__(self, root: str):
        self.remote = is_s3(root)
        self.fs, base = filesystem(root.rstrip("/") if self.remote else root)
        self.root = f"s3://{base}" if self.remote else base
        self._store = _S3Store(self) if self.remote else _LocalStore(self)

    def __reduce__(self):  # Spark tasks get the root and open their own file system
        return Lake, (self.root,)

    # -- names ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.remote else os.path.join(self.root, *parts)

    def fs_path(self, location: str) -> str:
        """The path of a location on ``self.fs`` (pyarrow names S3 objects without the scheme)."""
        return location[5:] if location.startswith("s3://") else location

    def location(self, fs_path: str) -> str:
        return f"s3://{fs_path}" if self.remote else fs_path

    # -- reading -------------------------------------------------------------------------------
    def _info(self, location: str):
        return self.fs.get_file_info(self.fs_path(location))

    def exists(self, location: str) -> bool:
        from pyarrow import fs

        return self._info(location).type != fs.FileType.NotFound

    def mtime(self, location: str) -> float | None:
        """Seconds since the epoch of a file's last change; None when it does not exist."""
        from pyarrow import fs

        info = self._info(location)
        return info.mtime.timestamp() if info.type != fs.FileType.NotFound and info.mtime is not None else None

    def listdir(self, location: str) -> list[str]:
        """Names directly under ``location``; [] when it does not exist."""
        from pyarrow import fs

        sel = fs.FileSelector(self.fs_path(location), allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(sel))

    def files(self, location: str, suffix: str = "") -> list[str]:
        """Every file under ``location`` (recursively) ending in ``suffix``."""
        from pyarrow import fs

        sel = fs.FileSelector(self.fs_path(location), recursive=True, allow_not_found=True)
        return sorted(self.location(i.path) for i in self.fs.get_file_info(sel)
                      if i.type == fs.FileType.File and i.base_name.endswith(suffix))

    def open_input(self, location: str):
        return self.fs.open_input_file(self.fs_path(location))

    def read_bytes(self, location: str) -> bytes:
        """A whole file as stored. Small objects that are replaced in place (pointers, leases) must be
        read whole, the old or the new: on S3 that is one GET (pyarrow's stream reads in ranges)."""
        return self._store.read_bytes(location)

    def read_bytes_or_none(self, location: str) -> bytes | None:
        try:
            return self.read_bytes(location)
        except (FileNotFoundError, IsADirectoryError):
            return None

    def read_json(self, rel: str):
        return json.loads(self.read_bytes(self.path(rel)))

    def read_json_or_none(self, rel: str):
        """The JSON file at ``rel``, or None where there is none (one read: no window between a check and it)."""
        data = self.read_bytes_or_none(self.path(rel))
        return None if data is None else json.loads(data)

    def read_parquet(self, location: str, **kw):
        """A Parquet file or folder as a pandas DataFrame (``columns=[...]`` reads only those)."""
        import pyarrow.parquet as pq

        return pq.read_table(self.fs_path(location), filesystem=self.fs, **kw).to_pandas()

    def arrow_dataset(self, location: str, **kw):
        import pyarrow.dataset as ds

        return ds.dataset(self.fs_path(location), filesystem=self.fs, **kw)

    def download(self, location: str, dest: str) -> str:
        """Copy the folder ``location`` into the local folder ``dest``; returns ``dest``."""
        return self._store.download(location, dest)

    @contextlib.contextmanager
    def local_copy(self, location: str):
        """A local folder holding the folder ``location`` for the with-block: the folder itself on a local
        lake; on S3 a download, removed when the block ends (a worker or a server that reads a model or a
        site once would otherwise leave a copy in the temporary folder at every start)."""
        if not self.remote:
            yield location
            return
        with tempfile.TemporaryDirectory(prefix="deeploc-") as local:
            yield self.download(location, local)

    # -- writing -------------------------------------------------------------------------------
    def write_bytes(self, location: str, data: bytes) -> None:
        """Write a whole file; readers see the old or the new content, never a part."""
        self._store.write_bytes(location, data)

    def put_file(self, local_path: str, location: str) -> None:
        """Copy a local file to ``location``, streamed (a large one goes to S3 in parts, never whole in
        memory: S3 takes at most 5 GB in one PUT); readers see the old or the new file, never a part."""
        self._store.put_file(local_path, location)

    def write_json(self, rel: str, obj) -> str:
        path = self.path(rel)
        self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())
        return path

    def delete(self, location: str) -> None:
        """Remove a file or a folder; nothing happens when it does not exist."""
        from pyarrow import fs

        info = self._info(location)
        if info.type == fs.FileType.Directory:
            self.fs.delete_dir(self.fs_path(location))
        elif info.type == fs.FileType.File:
            self.fs.delete_file(self.fs_path(location))

    def move(self, src: str, dst: str) -> None:
        """Move a folder to a location that does not exist yet: a rename locally, copies on S3 (for small
        folders only)."""
        self._store.move(src, dst)

    def compare_and_swap(self, location: str, expected: bytes | None, new: bytes) -> bool:
        """Replace the small file ``location`` by ``new`` if it still holds ``expected`` (None: if it does
        not exist), atomically; False when another writer changed it first."""
        return self._store.compare_and_swap(location, expected, new)

    def upload(self, local_dir: str, location: str) -> None:
        """Copy a local folder's contents to ``location`` (a new folder)."""
        self._store.upload(local_dir, location)

    def lock(self, name: str, wait_s: float = 3600.0):
        """Hold the lake-wide lock ``name`` (a context manager). It saves duplicate work (one parse at a
        time); correctness never depends on it (``deeploc.storage.catalog``, ``deeploc.storage.commit``)."""
        return self._store.lock(self.path("_locks", f"{name}.lock"), wait_s)


class _LocalStore:
    """A folder: renames are atomic, and an advisory file lock serialises writers."""

    def __init__(self, lake: Lake):
        self.lake = lake

    def read_bytes(self, location: str) -> bytes:
        with open(location, "rb") as f:
            return f.read()

    def write_bytes(self, location: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(location), exist_ok=True)
        tmp = f"{location}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, location)

    def move(self, src: str, dst: str) -> None:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.rename(src, dst)

    def put_file(self, local_path: str, location: str) -> None:
        os.makedirs(os.path.dirname(location), exist_ok=True)
        tmp = f"{location}.tmp-{uuid.uuid4().hex[:8]}"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, location)

    def compare_and_swap(self, location: str, expected: bytes | None, new: bytes) -> bool:
        with self.lock(f"{location}.lock", 600.0):  # an advisory lock serialises the read and the rename
            held = open(location, "rb").read() if os.path.isfile(location) else None
            if held != expected:
                return False
            self.write_bytes(location, new)
            return True

    def upload(self, local_dir: str, location: str) -> None:
        shutil.copytree(local_dir, location)

    def download(self, location: str, dest: str) -> str:
        shutil.copytree(location, dest, dirs_exist_ok=True)
        return dest

    @contextlib.contextmanager
    def lock(self, location: str, wait_s: float):
        """An advisory file lock: released by the kernel if the holder dies, so it is never stale."""
        import fcntl

        os.makedirs(os.path.dirname(location), exist_ok=True)
        with open(location, "a") as f:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"lock {location} still held after {wait_s:.0f} s") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


class _S3Store:
    """S3: a PUT is atomic, there is no rename, and conditional PUTs (If-None-Match / If-Match) give
    compare-and-swap on one object, which the lake's locks are built on."""

    def __init__(self, lake: Lake):
        self.lake = lake

    def _client(self):
        from deeploc.storage.uris import s3_client

        return s3_client()

    def write_bytes(self, location: str, data: bytes) -> None:
        with self.lake.fs.open_output_stream(self.lake.fs_path(location), compression=None) as f:
            f.write(data)

    def put_file(self, local_path: str, location: str) -> None:
        from pyarrow import fs

        fs.copy_files(local_path, self.lake.fs_path(location), destination_filesystem=self.lake.fs)

    def move(self, src: str, dst: str) -> None:
        from pyarrow import fs

        fs.copy_files(self.lake.fs_path(src), self.lake.fs_path(dst), source_filesystem=self.lake.fs,
                      destination_filesystem=self.lake.fs, use_threads=True)
        self.lake.delete(src)

    def read_bytes(self, location: str) -> bytes:
        held = self._get(location)
        if held is None:
            raise FileNotFoundError(location)
        return held[0]

    def compare_and_swap(self, location: str, expected: bytes | None, new: bytes) -> bool:
        held = self._get(location)
        if (held[0] if held else None) != expected:
            return False
        return self._put(location, new, **({"IfMatch": held[1]} if held else {"IfNoneMatch": "*"})) is not None

    def upload(self, local_dir: str, location: str) -> None:
        from pyarrow import fs

        fs.copy_files(local_dir, self.lake.fs_path(location), destination_filesystem=self.lake.fs, use_threads=True)

    def download(self, location: str, dest: str) -> str:
        from pyarrow import fs

        os.makedirs(dest, exist_ok=True)
        fs.copy_files(self.lake.fs_path(location), dest, source_filesystem=self.lake.fs, use_threads=True)
        return dest

    def _put(self, location: str, data: bytes, **condition) -> str | None:
        from botocore.exceptions import ClientError

        bucket, key = split_s3(location)
        try:
            return self._client().put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict",
                                                             "NoSuchKey", "412", "409"):
                return None
            raise

    def _get(self, location: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        bucket, key = split_s3(location)
        try:
            obj = self._client().get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return obj["Body"].read(), obj["ETag"]

    @contextlib.contextmanager
    def lock(self, location: str, wait_s: float):
        """A lease: an object created with If-None-Match, renewed with If-Match every LEASE_S / 4 by a
        thread while held. A holder that died stops renewing; after LEASE_S its lease may be taken
        over, again with If-Match on the stale version, so two waiters never both win it."""
        import threading

        owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        lease = lambda: json.dumps({"owner": owner, "expires": time.time() + LEASE_S}).encode()  # noqa: E731
        deadline, tag = time.monotonic() + wait_s, None
        while tag is None:
            tag = self._put(location, lease(), IfNoneMatch="*")
            if tag is None:
                held = self._get(location)
                if held is not None and json.loads(held[0]).get("expires", 0) < time.time():
                    tag = self._put(location, lease(), IfMatch=held[1])  # take over a dead holder's lease
            if tag is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lock {location} still held after {wait_s:.0f} s")
                time.sleep(0.2)
        state, stop = {"tag": tag}, threading.Event()

        def renew():
            while not stop.wait(LEASE_S / 4):
                new = self._put(location, lease(), IfMatch=state["tag"])
                if new is None:
                    log.error("lost the lease on %s (renewal refused)", location)
                    return
                state["tag"] = new

        keeper = threading.Thread(target=renew, daemon=True, name="lease-renewal")
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            held = self._get(location)
            if held is not None and held[1] == state["tag"]:
                self.lake.delete(location)
