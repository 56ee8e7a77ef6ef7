"""``deeploc compare`` on planted predictions: a run against itself differs by nothing; a run better on
a known set of users gets the hand-computed difference and McNemar p, and its interval widens when the
same photos come from fewer users (they are resampled whole)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import current, put_table
from deeploc.learn.compare import user_bootstrap
from deeploc.storage import commit
from deeploc.storage.lake import Lake


def _run(lake_root, name: str, users: list[str], right: list[bool]) -> None:
    """A run whose only output 'fine' (and the hierarchy) is 0.5 km off where ``right``, 5000 km off elsewhere."""
    lake = Lake(str(lake_root))
    with commit.building(lake, f"models/{name}") as out:
        with open(f"{out}/summary.json", "w") as f:
            json.dump({"order": ["fine"], "image_set": "full"}, f)
    km = [0.5 if r else 5000.0 for r in right]
    pred = pd.DataFrame({"photo_id": np.arange(len(users), dtype="int64"), "latitude": 10.0, "user_nsid": users,
                         "fine_km": km, "hierarchy_km": km, "run": name})
    put_table(lake_root, "predictions", pred, ("run",))


def _compare(lake, a, b):
    res = subprocess.run([sys.executable, "-m", "deeploc.cli", "-q", "compare", "--lake", str(lake), a, b],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_a_run_against_itself_and_a_better_one(tmp_path):
    users = [f"u{i}" for i in range(10) for _ in range(10)]  # 10 users, 10 photos each
    _run(tmp_path, "a", users, [int(u[1:]) < 5 for u in users])   # right on users 0-4: 50 %
    _run(tmp_path, "b", users, [int(u[1:]) < 8 for u in users])   # right on users 0-7: 80 %
    same = _compare(tmp_path, "a", "a")
    assert same["photos_both"] == 100
    for r in same["rows"]:
        assert r["difference"] == 0 and r["ci_low"] <= 0 <= r["ci_high"] and r["mcnemar_p"] == 1.0
    better = _compare(tmp_path, "a", "b")
    row = next(r for r in better["rows"] if r["output"] == "hierarchy" and r["scale"] == "street_1km")
    assert (row["accuracy_a"], row["accuracy_b"], row["difference"]) == pytest.approx((0.5, 0.8, 0.3))
    assert (row["a_only"], row["b_only"]) == (0, 30) and row["mcnemar_p"] == pytest.approx(2 * 0.5 ** 30)
    assert 0 < row["ci_low"] < 0.3 < row["ci_high"] <= 0.6  # users 5-7 are where they differ
    folder = current(tmp_path, "comparisons/a__b")
    assert "+30.0 pts" in (folder / "comparison.md").read_text()
    assert (folder / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_interval_widens_when_photos_come_from_fewer_users():
    a = np.zeros(400, bool)
    b = np.arange(400) < 100  # b is right on the first 100 photos, a on none: a difference of 0.25
    many = user_bootstrap(np.arange(400), a, b)               # every photo its own user
    few = user_bootstrap(np.repeat(np.arange(4), 100), a, b)  # the same photos, 100 from each of four users
    assert many[0] < 0.25 < many[1] and many[1] - many[0] < 0.12  # ~ +-1.96 * sqrt(0.25 * 0.75 / 400)
    assert few[0] == 0 and few[1] >= 0.5  # drawing user 0 never, or twice or more, among four
