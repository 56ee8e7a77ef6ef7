"""Removal-effect stage: the report's Table 4 from one model run.

The pair is this run and the latest run of the other image set (``models/LATEST-<image set>.json``):
a ``full`` model F and a ``removal`` model M (trained without photos whose face ratio passes the
threshold). M predicts F's test photos (predictions named ``M@F``; M never trained on them: both
split by the same hash rule, checked), then both are compared with ``deeploc compare``'s statistics
on all of F's test photos and on those without faces (face ratio at most M's threshold):
accuracy of each, the difference with a 95 % interval that resamples users, McNemar's p.
Written to ``comparisons/removal_effect/`` (JSON, markdown, figures); the web map shows it.
Without a run of the other image set the stage says so and writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

import pandas as pd

from deeploc.learn import compare
from deeploc.learn.predict import outputs_of
from deeploc.sources.bucket import Bucket
from deeploc.stages import infer
from deeploc.storage import catalog, commit, runs
from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)
OUTPUT = "comparisons/removal_effect"
SUBSETS = ("all", "without_faces")


def pair(lake: Lake, run: str, image_set: str) -> dict[str, str | None]:
    """{"full": run, "removal": run}: this run for its image set, the latest run for the other."""
    found = {s: runs.latest(lake, s) for s in ("full", "removal")}
    found[image_set] = run
    return found


def check_disjoint(full: dict, removal: dict) -> None:
    """The removal model must not have trained on the full run's test photos: both runs must split by
    the same rule and fractions (the split is a hash of the user or photo, so the test side is then the same)."""
    if full["split_rule"] != removal["split_rule"]:
        raise ValueError(f"runs {full['run']} and {removal['run']} split differently ({full['split_rule']} vs "
                         f"{removal['split_rule']}): the removal model may have trained on the full run's test "
                         "photos; rebuild one image set's partitionings with the other's split settings")


def table4(pred_full: pd.DataFrame, pred_removal: pd.DataFrame, face_ratio: pd.Series, threshold: float,
           outputs: list[str]) -> dict[str, pd.DataFrame]:
    """Per subset (all photos, photos without faces), ``compare.paired``'s rows: A = full, B = removal.
    ``face_ratio`` is indexed by photo id; a photo without one (never scored) counts in ``all`` only."""
    ratio = pred_full["photo_id"].map(face_ratio)
    no_faces = set(pred_full.loc[ratio.notna() & (ratio <= threshold), "photo_id"])
    return {"all": compare.paired(pred_full, pred_removal, outputs),
            "without_faces": compare.paired(pred_full[pred_full["photo_id"].isin(no_faces)],
                                            pred_removal[pred_removal["photo_id"].isin(no_faces)], outputs)}


def markdown(tables: dict[str, pd.DataFrame], full: str, removal: str, threshold: float) -> str:
    parts = [f"# Photos of people in training: {full} (full) against {removal} (removal)\n"]
    for subset, table in tables.items():
        n = int(table["n"].iloc[0]) if len(table) else 0
        title = ("all test photos" if subset == "all" else f"test photos without faces (face ratio <= {threshold})")
        parts.append(f"## On {title}: {n:,} photos\n\n" + compare.markdown(table, full, removal))
    return "\n".join(parts)


def _face_ratios(lake: Lake, photo_ids) -> pd.Series:
    faces, _ = catalog.read(lake, "faces", ["photo_id", "face_ratio"], writer="the faces stage")
    faces = faces[faces["photo_id"].isin(set(photo_ids))]
    return faces.set_index("photo_id")["face_ratio"].astype(float)


def _predict_on(lake: Lake, bucket: Bucket, model: str, photo_ids, name: str, crops: int) -> dict:
    """``model``'s predictions of these photos, committed as ``name`` (a photo-id list in the lake's scratch)."""
    listing = lake.path("_scratch", f"removal-effect-{uuid.uuid4().hex[:12]}.txt")
    lake.write_bytes(listing, "\n".join(str(int(i)) for i in photo_ids).encode())
    try:
        return infer.run(lake.root, bucket, run=model, photos=listing, crops=crops, name=name)
    finally:
        lake.delete(listing)


def run(lake: str, bucket: Bucket, run: str | None = None, crops: int = 1) -> dict:
    """Table 4 for this run and the latest run of the other image set; {"skipped": why} without one."""
    lake_ = Lake(lake)
    run = runs.resolve(lake_, run)
    image_set = commit.read_json(lake_, f"models/{run}", "summary.json", "train")["image_set"]
    names = pair(lake_, run, image_set)
    missing = [s for s, r in names.items() if r is None]
    if missing:
        why = f"no {missing[0]} model run yet: train one to compare (deeploc_model with image_set {missing[0]})"
        log.info("removal effect: %s", why)
        return {"skipped": why}
    full, removal = (commit.read_json(lake_, f"models/{names[s]}", "summary.json", "train") for s in ("full", "removal"))
    check_disjoint(full, removal)
    outputs = [o for o in outputs_of(full) if o in set(outputs_of(removal))]
    pred_full = compare.read_predictions(lake_, full["run"], outputs)
    cross = f"{removal['run']}@{full['run']}"  # the removal model on the full run's photos
    ledger = _predict_on(lake_, bucket, removal["run"], pred_full["photo_id"], cross, crops)
    pred_removal = compare.read_predictions(lake_, cross, outputs)
    if removal.get("face_threshold") is None:
        raise ValueError(f"model {removal['run']} does not record its face threshold (trained by an older "
                         "version); train it again")
    threshold = float(removal["face_threshold"])
    tables = table4(pred_full, pred_removal, _face_ratios(lake_, pred_full["photo_id"]), threshold, outputs)
    result = {"full_run": full["run"], "removal_run": removal["run"], "predictions": cross,
              "face_threshold": threshold, "replicates": compare.REPLICATES, "infer": ledger,
              "photos": {s: int(t["n"].iloc[0]) if len(t) else 0 for s, t in tables.items()},
              "rows": {s: compare.records(t) for s, t in tables.items()}}
    with commit.building(lake_, OUTPUT) as out:
        with open(os.path.join(out, "table4.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(out, "table4.md"), "w") as f:
            f.write(markdown(tables, full["run"], removal["run"], threshold))
        for subset, table in tables.items():
            if len(table) and table["n"].iloc[0]:
                compare.figure(os.path.join(out, f"table4_{subset}.png"), table, full["run"], removal["run"])
    log.info("removal effect: %s (full) vs %s (removal) on %s photos", full["run"], removal["run"], result["photos"])
    return {k: result[k] for k in ("full_run", "removal_run", "predictions", "photos")}
