"""The removal effect (the report's Table 4) on planted predictions: the pair of runs, the split check,
and the table on all photos and on photos without faces, against values computed by hand."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from deeploc.stages import removal_effect
from deeploc.storage import commit, runs
from deeploc.storage.lake import Lake


def _model(lake: Lake, run: str, image_set: str, split_by: str = "user") -> dict:
    summary = {"run": run, "image_set": image_set, "order": ["cell"], "outputs": {"cell": 3},
               "split_rule": {"by": split_by, "test_fraction": 0.2, "val_fraction": 0.2},
               "face_threshold": 0.035 if image_set == "removal" else None}
    with commit.building(lake, f"models/{run}") as out:
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f)
    runs.mark_latest(lake, run, image_set)
    return summary


def test_the_pair_is_this_run_and_the_latest_of_the_other_set(tmp_path):
    lake = Lake(str(tmp_path))
    _model(lake, "m1", "removal")
    # Alone, the stage says what is missing and makes nothing.
    assert removal_effect.run(str(tmp_path), bucket=None, run="m1") == {
        "skipped": "no full model run yet: train one to compare (deeploc_model with image_set full)"}
    assert commit.current(lake, removal_effect.OUTPUT) is None
    _model(lake, "f1", "full")
    _model(lake, "f2", "full")
    assert removal_effect.pair(lake, "m1", "removal") == {"full": "f2", "removal": "m1"}
    assert removal_effect.pair(lake, "f1", "full") == {"full": "f1", "removal": "m1"}


def test_runs_split_differently_are_refused(tmp_path):
    lake = Lake(str(tmp_path))
    full, removal = _model(lake, "f", "full", "user"), _model(lake, "m", "removal", "photo")
    with pytest.raises(ValueError, match="may have trained on the full run's test photos"):
        removal_effect.check_disjoint(full, removal)
    removal_effect.check_disjoint(full, _model(lake, "m2", "removal", "user"))


def test_table4_on_planted_predictions():
    # 4 users with 2 photos each; photos 1 and 2 show faces. The full model is within 25 km everywhere;
    # the removal model misses photos 1 and 2 (500 km) and photo 9 is one only the full run predicted.
    ids = np.arange(1, 10)
    users = ["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4", "u5"]
    full = pd.DataFrame({"photo_id": ids, "user_nsid": users, "hierarchy_km": 10.0})
    removal = pd.DataFrame({"photo_id": ids[:8], "user_nsid": users[:8],
                            "hierarchy_km": [500.0, 500.0] + [10.0] * 6})
    ratio = pd.Series([0.5, 0.2, 0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0], index=ids)
    tables = removal_effect.table4(full, removal, ratio, 0.035, ["hierarchy"])
    at25 = {s: t.set_index("scale").loc["city_25km"] for s, t in tables.items()}
    assert (at25["all"]["n"], at25["all"]["users"]) == (8, 4)           # photo 9: one run only
    assert (at25["all"]["accuracy_a"], at25["all"]["accuracy_b"]) == (1.0, 0.75)
    assert at25["all"]["difference"] == pytest.approx(-0.25)
    assert (at25["all"]["a_only"], at25["all"]["b_only"]) == (2, 0)
    assert at25["all"]["mcnemar_p"] == pytest.approx(0.5)               # 2 x 0.5^2
    assert at25["all"]["ci_low"] <= -0.25 <= at25["all"]["ci_high"] <= 0
    assert (at25["without_faces"]["n"], at25["without_faces"]["users"]) == (6, 3)
    assert at25["without_faces"]["difference"] == 0 and at25["without_faces"]["mcnemar_p"] == 1.0
    md = removal_effect.markdown(tables, "F", "M", 0.035)
    assert "## On all test photos: 8 photos" in md and "face ratio <= 0.035): 6 photos" in md
