"""Evaluation on hand-made predictions: accuracies at the five scales, same country and continent on
both sides of borders, a truth at sea counted apart, the per-continent table and the figures."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import current, put_table

from deeploc.earth import geography
from deeploc.stages import evaluate
from deeploc.storage import commit, ledger
from deeploc.storage.lake import Lake

# (truth lat, lon, predicted lat, lon): distances and countries checkable on any map
CASES = [
    ((52.5200, 13.4050), (52.5230, 13.4100)),   # Berlin, ~0.5 km off: same country
    ((48.5734, 7.7521), (48.5731, 7.8150)),     # Strasbourg -> Kehl, ~4.6 km across the Rhine: Germany
    ((46.2044, 6.1432), (46.1934, 6.2345)),     # Geneva -> Annemasse, ~7 km: France
    ((0.0, -30.0), (0.0, -29.0)),               # mid-Atlantic, ~111 km: truth in no country
    ((48.8566, 2.3522), (50.8503, 4.3517)),     # Paris -> Brussels, ~264 km: Belgium
]


@pytest.fixture
def lake(tmp_path):
    lake = Lake(str(tmp_path))
    with commit.building(lake, "models/r") as run:
        with open(f"{run}/summary.json", "w") as f:
            json.dump({"order": ["fine"], "image_set": "full",
                       "split_rule": {"by": "user", "test_fraction": 0.2, "val_fraction": 0.2}}, f)
        pd.DataFrame({"partitioning": "fine", "class": [0, 1], "count": [3, 9], "mean_lat": [0.0, -33.87],
                      "mean_lon": [0.0, 151.21]}).to_parquet(f"{run}/cells.parquet")  # the prior: Sydney
        pd.DataFrame({"fine": [0, 1]}).to_parquet(f"{run}/hierarchy.parquet")  # one partitioning: its own
    pred = pd.DataFrame({"photo_id": np.arange(1, 6, dtype="int64"), "latitude": [t[0] for t, _ in CASES],
                         "longitude": [t[1] for t, _ in CASES]})
    for o in ("fine", "hierarchy"):
        pred[f"{o}_lat"], pred[f"{o}_lon"] = [p[0] for _, p in CASES], [p[1] for _, p in CASES]
        pred[f"{o}_km"] = [0.5, 4.6, 7.1, 111.2, 264.0]
        pred[f"{o}_class"] = [1, 1, 0, 0, 1]
        pred[f"{o}_topk_class"] = [[c, 1 - c] for c in pred[f"{o}_class"]]
        pred[f"{o}_topk_prob"] = [[0.5, 0.1]] * len(CASES)
    pred["user_nsid"] = ["a", "a", "a", "b", "c"]  # one prolific user, right every time; two others, wrong
    put_table(tmp_path, "predictions", pred.assign(run="r"), ("run",))
    ledger.record(lake, "infer", "r", len(pred), len(pred), {}, photos="the test split", split="test")
    with commit.building(lake, "partitionings/full") as parts:
        pd.DataFrame({"photo_id": [100, 101, 1, 2, 3, 4, 5], "latitude": [10.0, 20.0, *[t[0] for t, _ in CASES]],
                      "longitude": [30.0, 40.0, *[t[1] for t, _ in CASES]], "split": ["train", "val", *["test"] * 5],
                      "class_fine": [0, 1, 1, 1, 0, 1, 0]}).to_parquet(f"{parts}/photos.parquet")
    return tmp_path


def test_countries_on_both_sides_of_borders():
    found = geography.locate([c[0][0] for c in CASES] + [c[1][0] for c in CASES],
                             [c[0][1] for c in CASES] + [c[1][1] for c in CASES])
    country, continent = found.country, found.continent
    assert list(country) == ["Germany", "France", "Switzerland", None, "France",
                             "Germany", "Germany", "France", None, "Belgium"]
    assert set(continent) - {None} == {"Europe"}


def test_known_accuracies(lake):
    m = evaluate.run(str(lake), "r")
    hier = next(r for r in m["table"] if r["method"] == "hierarchy")
    assert [hier[k] for k in ("street_1km", "city_25km", "region_200km", "country_750km", "continent_2500km")] == \
        pytest.approx([1 / 5, 3 / 5, 4 / 5, 5 / 5, 5 / 5])
    assert hier["same_country"] == pytest.approx(1 / 4)  # of the four truths on land, only Berlin
    assert hier["same_continent"] == pytest.approx(1.0)
    assert m["truth_outside_countries"] == 1 and m["split"] == "test" and m["split_rule"]["by"] == "user"
    prior = next(r for r in m["table"] if r["method"].startswith("prior"))
    assert prior["continent_2500km"] == 0.0 and prior["same_continent"] == 0.0  # Sydney for everyone
    europe = next(r for r in m["by_continent"] if r["continent"] == "Europe")
    assert europe["n"] == 4 and europe["city_25km"] == pytest.approx(3 / 4)
    assert sorted(m["figures"]) == ["accuracy_curve.png", "data_map.png", "reliability.png"]
    for name in m["figures"]:
        assert (current(lake, "metrics/r") / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "same_country" in (current(lake, "metrics/r") / "accuracy.md").read_text()


def test_geoscore_user_macro_and_countries(lake):
    m = evaluate.run(str(lake), "r")
    hier = next(r for r in m["table"] if r["method"] == "hierarchy")
    # GeoGuessr's points, 5000 * exp(-d / 1492.7 km), at the distances written beside CASES
    assert hier["geoscore"] == pytest.approx(sum(5000 * math.exp(-d / 1492.7) for d in (0.5, 4.6, 7.1, 111.2, 264.0)) / 5,
                                             abs=1.0)
    macro = next(r for r in m["user_macro"] if r["method"] == "hierarchy")
    # within 25 km: user a 3 of 3, b 0 of 1, c 0 of 1 -> (1 + 0 + 0) / 3, where the photos' share is 3 / 5
    assert macro["city_25km"] == pytest.approx(1 / 3) and macro["users"] == 3
    assert macro["region_200km"] == pytest.approx((1 + 1 + 0) / 3)  # b's 111 km counts at 200 km, c's 264 does not
    # countries of the truth, most photos first: France (Strasbourg, Paris), then Germany and Switzerland
    countries = {r["country"]: r for r in m["by_country"]}
    assert [r["country"] for r in m["by_country"]][0] == "France" and set(countries) == {"France", "Germany", "Switzerland"}
    assert countries["France"]["n"] == 2 and countries["France"]["city_25km"] == pytest.approx(1 / 2)


def test_calibration_on_the_test_photos(lake):
    m = evaluate.run(str(lake), "r")
    fine = next(r for r in m["calibration"] if r["method"] == "fine")
    # top cells 1,1,0,0,1 against true cells 1,1,0,1,0: right 3 times of 5, each said with 0.5 -> |0.6 - 0.5|
    assert fine["ece_test"] == pytest.approx(0.1) and fine["n"] == 5 and fine["temperature"] is None  # no fit: none
    assert "reliability.png" in m["figures"]
