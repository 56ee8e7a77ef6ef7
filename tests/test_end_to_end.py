"""The README's main command on a fresh state folder: both DAGs through Airflow, counts exact."""

import json
import os
import re
import subprocess

import pandas as pd
import pytest
from conftest import REPO, current, table
from pyiceberg.expressions import EqualTo

pytestmark = pytest.mark.e2e


def _ledgers(lake, stage):
    folder = os.path.join(lake, "_ledgers", stage)
    return {f[:-5]: json.load(open(os.path.join(folder, f))) for f in sorted(os.listdir(folder))}


def test_every_row_is_accounted_for(demo_run):
    home, _, _ = demo_run
    lake = str(home / "lake")
    e = json.load(open(home / "demo" / "manifest.json"))["expected"]
    parse = _ledgers(lake, "parse")["input"]
    assert (parse["in"], parse["out"], parse["rejects"]) == (e["parse_in"], e["parse_out"], e["parse_rejects"])
    for stage in ("metadata", "availability", "faces"):
        ledgers = _ledgers(lake, stage)
        assert sorted(ledgers) == [str(y) for y in range(2004, 2015)]  # one per yearly slice, named by its year
        assert all(lg["in"] == lg["out"] + lg["rejected"] for lg in ledgers.values())
        rej = table(lake, f"rejects/{stage}")["reject_reason"].value_counts().to_dict()
        assert rej == e[f"{stage}_rejects"], stage
    assert sum(lg["in"] for lg in _ledgers(lake, "metadata").values()) == e["parse_out"]
    assert len(table(lake, "metadata")) == e["metadata_out"]
    assert len(table(lake, "images")) == e["availability_out"]
    assert len(table(lake, "faces")) == e["faces_out"]


def test_the_terminal_gets_a_line_per_task_and_the_logs_a_file(demo_run):
    home, _, res = demo_run
    out = res.stdout
    assert "[1/11] ingestion 2004" in out and "[11/11] ingestion 2014" in out
    assert out.count(" faces ") == 11 and "  model           train " in out
    assert len(out.splitlines()) < 100  # Airflow's own logging went to the file
    log = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("[deeploc] full logs"))
    assert log.startswith(str(home / "logs")) and os.path.getsize(log) > 10_000


def test_model_beats_the_prior_and_site_is_safe(demo_run):
    home, _, res = demo_run
    lake = home / "lake"
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet")
    pred = table(lake, "predictions", where=EqualTo("run", "e2e"))
    assert len(pred) == (photos["split"] == "test").sum()
    accuracy = pd.read_csv(current(lake, "metrics/e2e") / "accuracy.csv").set_index("method")
    assert list(accuracy.index[:4]) == ["coarse", "medium", "fine", "hierarchy"]
    prior = accuracy.loc["prior (most frequent cell)"]
    assert accuracy.loc["hierarchy", "continent_2500km"] > prior["continent_2500km"] + 0.2
    assert accuracy.loc["hierarchy", "median_km"] < prior["median_km"]
    # the site the demo printed (later tests in the session may publish newer versions of it)
    printed = re.search(r"(\S+/site/v-[^/\s]+/index\.html)", res.stdout)
    assert printed, res.stdout[-2000:]
    site = printed.group(1)
    assert site.startswith(str(lake / "site")), site
    html = open(site).read()
    assert "<script>alert" not in html and "\\u003cscript\\u003ealert" in html
    assert "127.0.0.1" in res.stdout and "hierarchy" in res.stdout


def test_rerunning_a_slice_duplicates_nothing(demo_run):
    home, env, _ = demo_run
    lake = str(home / "lake")
    before = {t: len(table(lake, t)) for t in ("metadata", "images", "faces")}
    res = subprocess.run([str(REPO / "dev"), "dags", "--from", "2010-01-01", "--to", "2011-01-01", "--skip-model"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "no new or changed file" in res.stdout
    after = {t: len(table(lake, t)) for t in ("metadata", "images", "faces")}
    assert after == before
