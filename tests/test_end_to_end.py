"""The README's main command on a fresh state folder: both DAGs through Airflow, counts exact."""

import json
import os
import subprocess

import pandas as pd
import pytest
from conftest import REPO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("deeploc-home")
    env = {**os.environ, "DEEPLOC_HOME": str(home), "DEEPLOC_DEMO_ROWS": "1500", "DEEPLOC_DEMO_SEED": "5",
           "DEEPLOC_MODEL_CONF": json.dumps({"run": "e2e", "epochs": 8})}
    for var in ("DEEPLOC_LAKE", "DEEPLOC_BUCKET", "DEEPLOC_METADATA", "AIRFLOW_HOME"):
        env.pop(var, None)
    res = subprocess.run([str(REPO / "dev"), "demo"], env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    return home, env, res


def _ledgers(lake, stage):
    folder = os.path.join(lake, "_ledgers", stage)
    return {f: json.load(open(os.path.join(folder, f))) for f in sorted(os.listdir(folder))}


def test_every_row_is_accounted_for(demo_run):
    home, _, _ = demo_run
    lake = str(home / "lake")
    e = json.load(open(home / "demo" / "manifest.json"))["expected"]
    for stage in ("metadata", "availability", "faces"):
        ledgers = _ledgers(lake, stage)
        assert len(ledgers) == 11, sorted(ledgers)  # one per yearly slice, 2004-2014
        assert all(lg["in"] == lg["out"] + lg["rejected"] for lg in ledgers.values())
        rej = pd.read_parquet(os.path.join(lake, "rejects", stage))["reject_reason"].value_counts().to_dict()
        assert rej == e[f"{stage}_rejects"], stage
    assert sum(lg["out"] for lg in _ledgers(lake, "metadata").values()) == e["metadata_out"]
    assert len(pd.read_parquet(os.path.join(lake, "metadata"))) == e["metadata_out"]
    assert len(pd.read_parquet(os.path.join(lake, "images"))) == e["availability_out"]
    assert len(pd.read_parquet(os.path.join(lake, "faces"))) == e["faces_out"]


def test_model_beats_the_prior_and_site_is_safe(demo_run):
    home, _, res = demo_run
    lake = home / "lake"
    labels = pd.read_parquet(lake / "partitions" / "full" / "labels.parquet")
    pred = pd.read_parquet(lake / "predictions" / "e2e")
    assert len(pred) == (labels["split"] == "test").sum()
    table = pd.read_csv(lake / "metrics" / "e2e" / "accuracy.csv").set_index("method")
    assert list(table.index[:4]) == ["coarse", "medium", "fine", "hierarchy"]
    prior = table.loc["prior (most frequent cell)"]
    assert table.loc["hierarchy", "continent_2500km"] > prior["continent_2500km"] + 0.2
    assert table.loc["hierarchy", "median_km"] < prior["median_km"]
    html = (lake / "site" / "index.html").read_text()
    assert "<script>alert" not in html and "\\u003cscript\\u003ealert" in html
    assert "site/index.html" in res.stdout and "127.0.0.1" in res.stdout and "hierarchy" in res.stdout


def test_rerunning_a_slice_duplicates_nothing(demo_run):
    home, env, _ = demo_run
    lake = str(home / "lake")
    before = {t: len(pd.read_parquet(os.path.join(lake, t))) for t in ("metadata", "images", "faces")}
    res = subprocess.run([str(REPO / "dev"), "dags", "--from", "2010-01-01", "--to", "2011-01-01", "--skip-model"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    after = {t: len(pd.read_parquet(os.path.join(lake, t))) for t in ("metadata", "images", "faces")}
    assert after == before
