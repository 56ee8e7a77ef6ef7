"""Model runs in the lake: ``models/<run>/`` and which one is the latest (``models/LATEST.json``)."""

from __future__ import annotations

from deeploc.lake import Lake

LATEST = "models/LATEST.json"


def resolve(lake: Lake, run: str | None) -> str:
    """``run``, or the latest trained run when None; an error that says what to do when there is none."""
    if run:
        return run
    if not lake.exists(lake.path(LATEST)):
        raise FileNotFoundError(f"no trained model under {lake.path('models')}; run train first (or pass --run)")
    return lake.read_json(LATEST)["run"]


def mark_latest(lake: Lake, run: str, image_set: str) -> None:
    lake.write_json(LATEST, {"run": run, "image_set": image_set})
