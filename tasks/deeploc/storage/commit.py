"""How a stage's output enters the lake: a table by one Iceberg commit (``deeploc.storage.catalog``), a folder by
one pointer.

A folder output (``models/<run>``, ``partitionings/<image set>``, ``shards/<image set>``,
``metrics/<run>``, ``site``, ``duplicates``) is written whole into a version of its own,
``<output>/v-<UTC time>-<random>/``, and made current by rewriting one small object, ``<output>/CURRENT``:
a rename locally, one conditional PUT on S3; nothing is copied. Readers resolve the pointer once
(``current``) and read that version, which stays in place while they read it: versions are removed
only ``RETAIN`` after they stopped being current, and versions that never became current (a killed
run's) once older than ``ABANDONED_AFTER``, by the next publish of the same output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import uuid
from datetime import datetime, timezone

from deeploc.storage.catalog import ABANDONED_AFTER, RETAIN
from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)

POINTER = "CURRENT"
_STAMP = "%Y%m%dT%H%M%S"
_VERSION = re.compile(r"v-(\d{8}T\d{6})-[0-9a-f]{10}")


def new_version(lake: Lake, output: str) -> str:
    """A location for a new version of ``output`` that no other run writes into."""
    return lake.path(output, f"v-{datetime.now(timezone.utc).strftime(_STAMP)}-{uuid.uuid4().hex[:10]}")


def _pointer(lake: Lake, output: str) -> dict | None:
    data = lake.read_bytes_or_none(lake.path(output, POINTER))
    return json.loads(data) if data is not None else None


def current(lake: Lake, output: str) -> str | None:
    """The location of ``output``'s current version; None when it was never published."""
    pointer = _pointer(lake, output)
    return lake.path(output, pointer["version"]) if pointer else None


def require(lake: Lake, output: str, writer: str) -> str:
    """``current``, or an error naming the stage that makes the output."""
    found = current(lake, output)
    if found is None:
        raise FileNotFoundError(f"no {output} under {lake.root}; run {writer} first")
    return found


def read_json(lake: Lake, output: str, name: str, writer: str):
    return json.loads(lake.read_bytes(f"{require(lake, output, writer)}/{name}"))


def make_current(lake: Lake, output: str, version: str) -> None:
    """Point ``output`` at ``version`` (a location from ``new_version``), then remove old versions."""
    name = version.rstrip("/").rsplit("/", 1)[-1]
    now = datetime.now(timezone.utc)
    while True:  # compare-and-swap: a publisher that raced this one is never lost from the history
        raw = lake.read_bytes_or_none(lake.path(output, POINTER))
        old = json.loads(raw) if raw is not None else None
        superseded = [*(old or {}).get("superseded", []), *([{"version": old["version"], "at": now.isoformat()}]
                                                             if old else [])]
        new = {"version": name, "since": now.isoformat(), "superseded": superseded}
        if lake.compare_and_swap(lake.path(output, POINTER), raw, json.dumps(new, indent=2).encode()):
            break
    _remove_old_versions(lake, output, new, now)


def _remove_old_versions(lake: Lake, output: str, pointer: dict, now: datetime) -> None:
    keep = {pointer["version"]} | {s["version"] for s in pointer["superseded"]
                                   if now - datetime.fromisoformat(s["at"]) <= RETAIN}
    gone = []
    for name in lake.listdir(lake.path(output)):
        m = _VERSION.fullmatch(name)
        if m is None or name in keep:
            continue
        made = datetime.strptime(m.group(1), _STAMP).replace(tzinfo=timezone.utc)
        if any(s["version"] == name for s in pointer["superseded"]) or now - made > ABANDONED_AFTER:
            lake.delete(lake.path(output, name))
            gone.append(name)
    if gone:
        log.info("%s: removed %d old version(s)", output, len(gone))


@contextlib.contextmanager
def building(lake: Lake, output: str):
    """Yield a local folder to write a whole output in (e.g. ``models/<run>``); when the block ends
    without an error it becomes the output's current version. On a local lake the folder is the new
    version itself; on S3 it is uploaded first. A failed block leaves the current version as it was."""
    version = new_version(lake, output)
    if lake.remote:
        with tempfile.TemporaryDirectory(prefix="deeploc-") as local:
            yield local
            lake.upload(local, version)
    else:
        os.makedirs(version)
        try:
            yield version
        except BaseException:
            lake.delete(version)
            raise
    make_current(lake, output, version)
