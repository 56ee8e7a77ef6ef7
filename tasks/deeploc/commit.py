"""How every stage's output enters the lake: built off to the side, then swapped in under a lock.

A run writes its whole output into staging that belongs to it alone (``_staging-<UTC time>-<random>``
beside the output; readers skip names starting with ``_``). Publishing then swaps named units (the
month folders of a table, or one whole output folder such as ``models/<run>``) from staging into
place, one unit at a time, while holding the lake lock of that output. So runs for different slices
never touch each other's units, and two runs of the same slice replace a unit one after the other:
the last one wins, with the same rows as the first.

Locally a swap is two renames, and readers see a unit old or new, never half. S3 has no rename: a
unit is briefly absent or partly copied while it is replaced; ``slice_io.read_slice`` checks what it
read against the writer's ledger and reads again.

Cleaning: a run removes its own staging and the old copies it swapped out. Leftovers of a killed run
are removed by later runs only once older than ``ABANDONED_AFTER``, longer than any run may take, so
one run never deletes another live run's work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import uuid
from datetime import datetime, timedelta, timezone

from deeploc.lake import Lake
from deeploc.slices import Slice
from deeploc.tables import MONTH

log = logging.getLogger(__name__)

STAGING, TRASH = "_staging-", "_trash-"
# Longer than the longest run the DAGs allow (their timeouts), so nothing younger can be a live run's.
ABANDONED_AFTER = timedelta(hours=48)
_STAMP = "%Y%m%dT%H%M%S"


def _fresh(prefix: str) -> str:
    return f"{prefix}{datetime.now(timezone.utc).strftime(_STAMP)}-{uuid.uuid4().hex[:10]}"


def new_staging(lake: Lake, parent: str) -> str:
    """A location no other run will use, inside the folder ``parent`` (relative to the lake root)."""
    return lake.path(parent, _fresh(STAGING)) if parent else lake.path(_fresh(STAGING))


def _created(name: str) -> datetime | None:
    m = re.match(rf"(?:{STAGING}|{TRASH})(\d{{8}}T\d{{6}})-", name)
    return datetime.strptime(m.group(1), _STAMP).replace(tzinfo=timezone.utc) if m else None


def sweep(lake: Lake, parent: str) -> list[str]:
    """Remove the staging and trash under ``parent`` that are provably abandoned (older than
    ``ABANDONED_AFTER``); return their names."""
    now, removed = datetime.now(timezone.utc), []
    folder = lake.path(parent) if parent else lake.root
    for name in lake.listdir(folder):
        created = _created(name)
        if created is not None and now - created > ABANDONED_AFTER:
            lake.delete(f"{folder.rstrip('/')}/{name}" if lake.remote else os.path.join(folder, name))
            removed.append(name)
    if removed:
        log.info("removed %d abandoned staging folder(s) under %s", len(removed), folder)
    return removed


def _parent(output: str) -> str:
    return output.rsplit("/", 1)[0] if "/" in output else ""


def _lock_name(output: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", output) or "root"


def publish(lake: Lake, output: str, swaps: list[tuple[str | None, str]]) -> None:
    """Under the lock of ``output`` (a path relative to the root), put each staged location in
    place of its final one (None: remove the final one)."""
    with lake.lock(_lock_name(output)):
        for staged, final in swaps:
            trash = f"{final.rstrip('/').rsplit('/', 1)[0]}/{_fresh(TRASH)}"  # beside final: a rename locally
            if lake.exists(final):
                lake.move(final, trash)
            if staged is not None:
                lake.move(staged, final)
            lake.delete(trash)
    sweep(lake, output)
    sweep(lake, _parent(output))


def months_in(lake: Lake, location: str) -> list[str]:
    """The ``YYYY-MM`` month folders of a table (or of its staging)."""
    return [d.split("=", 1)[1] for d in lake.listdir(location) if d.startswith(MONTH + "=")]


def publish_months(lake: Lake, table: str, staged: str, sl: Slice) -> None:
    """Make the slice's months of ``table`` exactly what ``staged`` holds: staged months replace
    theirs, months of the slice that got no rows are removed, months outside it are untouched."""
    new = set(months_in(lake, staged))
    outside = sorted(m for m in new if not sl.covers(m))
    if outside:
        raise RuntimeError(f"{table}: staged rows outside the slice {sl.name}: {outside[:5]}")
    old = {m for m in months_in(lake, lake.path(table)) if sl.covers(m)}
    unit = lambda base, m: f"{base}/{MONTH}={m}" if lake.remote else os.path.join(base, f"{MONTH}={m}")  # noqa: E731
    publish(lake, table, [(unit(staged, m) if m in new else None, unit(lake.path(table), m))
                          for m in sorted(new | old)])
    lake.delete(staged)


@contextlib.contextmanager
def building(lake: Lake, output: str):
    """Yield a local folder to write a whole output in (e.g. ``models/<run>``); when the block ends
    without an error it replaces ``output``. On a local lake the folder is the staging itself."""
    parent = _parent(output)
    if lake.remote:
        with tempfile.TemporaryDirectory(prefix="deeploc-") as local:
            yield local
            staged = new_staging(lake, parent)
            lake.upload(local, staged)
            publish(lake, output, [(staged, lake.path(output))])
        return
    staged = new_staging(lake, parent)
    os.makedirs(staged)
    try:
        yield staged
    except BaseException:
        lake.delete(staged)
        raise
    publish(lake, output, [(staged, lake.path(output))])
