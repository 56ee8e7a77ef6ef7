"""Shard files streamed from the lake (S3) through a bounded local folder, instead of copying every
shard to the training disk before the first step.

``paths(locations)`` yields a local copy of each file in the order asked, downloading ``ahead`` files
in advance on threads. Once the folder holds more than ``max_bytes``, the files yielded longest ago are
removed; the last ``protect`` yielded (those ``tf.data``'s interleave may still be reading) and those
being fetched never are, and a reader that has a removed file open keeps reading it (POSIX). A file
still in the folder when asked for again (the next epoch, with a cache as large as the shards) is
not downloaded again.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from deeploc.storage.lake import Lake


class ShardCache:
    # tf.data's parallel interleave holds its cycle of files and as many ahead: 2 x 8 are never removed.
    def __init__(self, lake: Lake, folder: str, max_bytes: int, ahead: int = 4, protect: int = 24):
        self.lake, self.folder, self.max_bytes, self.ahead, self.protect = lake, folder, max_bytes, ahead, protect
        self.held: collections.OrderedDict[str, int] = collections.OrderedDict()  # local path -> bytes, oldest first
        self.downloads = 0
        os.makedirs(folder, exist_ok=True)

    def _local(self, location: str) -> str:
        return os.path.join(self.folder, hashlib.sha1(location.encode()).hexdigest()[:16] + ".tfrecord")

    def _fetch(self, location: str) -> str:
        from pyarrow import fs

        dest = self._local(location)
        # Its own partial name: two readers of the cache (training's, and the peek at its first batch)
        # may fetch one file at once; each replaces the file whole.
        partial = f"{dest}.{threading.get_ident()}.part"
        fs.copy_files(self.lake.fs_path(location), partial, source_filesystem=self.lake.fs,
                      destination_filesystem=fs.LocalFileSystem())
        os.replace(partial, dest)
        return dest

    def paths(self, locations: list[str]):
        pending: collections.deque[tuple[str, Future]] = collections.deque()
        todo = iter(locations)
        with ThreadPoolExecutor(self.ahead) as pool:
            def submit() -> None:
                location = next(todo, None)
                if location is None:
                    return
                path = self._local(location)
                if path in self.held:  # still here: reuse it
                    done: Future = Future()
                    done.set_result(path)
                    pending.append((path, done))
                else:
                    self.downloads += 1
                    pending.append((path, pool.submit(self._fetch, location)))

            for _ in range(self.ahead):
                submit()
            while pending:
                path, future = pending.popleft()
                future.result()
                submit()
                self.held[path] = os.path.getsize(path)
                self.held.move_to_end(path)
                self._evict({p for p, _ in pending})
                yield path

    def _evict(self, busy: set[str]) -> None:
        """Remove the oldest files while over the limit, sparing the last ``protect`` and ``busy``."""
        total = sum(self.held.values())
        spare = set(list(self.held)[-self.protect:]) | busy
        for path in list(self.held):
            if total <= self.max_bytes:
                break
            if path in spare:
                continue
            total -= self.held.pop(path)
            os.remove(path)
