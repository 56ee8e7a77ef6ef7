"""Model runs in the lake: ``models/<run>/``, which one is the latest (``models/LATEST.json``), and the
latest of each image set (``models/LATEST-<image set>.json``: the pair the removal effect compares)."""

from __future__ import annotations

from deeploc.storage.lake import Lake

LATEST = "models/LATEST.json"


def resolve(lake: Lake, run: str | None) -> str:
    """``run``, or the latest trained run when None; an error that says what to do when there is none."""
    if run:
        return run
    latest_run = lake.read_json_or_none(LATEST)
    if latest_run is None:
        raise FileNotFoundError(f"no trained model under {lake.path('models')}; run train first (or pass --run)")
    return latest_run["run"]


def latest(lake: Lake, image_set: str) -> str | None:
    """The latest trained run of an image set, or None."""
    return (lake.read_json_or_none(f"models/LATEST-{image_set}.json") or {}).get("run")


def mark_latest(lake: Lake, run: str, image_set: str) -> None:
    for path in (LATEST, f"models/LATEST-{image_set}.json"):
        lake.write_json(path, {"run": run, "image_set": image_set})
