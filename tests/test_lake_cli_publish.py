"""Slices and atomic replacement, the command line, and the site's handling of untrusted text."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from deeploc.lake import Lake, Slice
from deeploc.stages.publish import points, safe_json


def test_slice_months_and_labels():
    s = Slice.of("2010-11-01", "2011-02-01")
    assert s.months() == ["2010-11", "2010-12", "2011-01"] and s.label == "2010-11_2011-02"
    with pytest.raises(ValueError):
        Slice.of("2011-02-01", "2010-11-01")


def test_replace_slice_swaps_only_its_months(tmp_path):
    lake = Lake(str(tmp_path))
    for month in ("2010-01", "2010-02", "2011-01"):
        os.makedirs(lake.path("t", f"upload_month={month}"))
        open(lake.path("t", f"upload_month={month}", "old"), "w").close()
    staged = lake.staging("t")
    os.makedirs(os.path.join(staged, "upload_month=2010-02"))
    open(os.path.join(staged, "upload_month=2010-02", "new"), "w").close()
    os.makedirs(lake.path("t", "_staging-leftover"))  # from a killed run
    lake.replace_slice("t", staged, Slice.of("2010-01-01", "2011-01-01").months(), with_unknown=False)
    assert sorted(os.listdir(lake.path("t"))) == ["upload_month=2010-02", "upload_month=2011-01"]
    assert os.listdir(lake.path("t", "upload_month=2010-02")) == ["new"]
    assert os.listdir(lake.path("t", "upload_month=2011-01")) == ["old"]


def test_replace_slice_refuses_rows_outside_the_slice(tmp_path):
    lake = Lake(str(tmp_path))
    staged = lake.staging("t")
    os.makedirs(os.path.join(staged, "upload_month=1999-01"))
    with pytest.raises(RuntimeError, match="outside the slice"):
        lake.replace_slice("t", staged, ["2010-01"], with_unknown=False)


def test_cli_help_and_clear_errors(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "deeploc.cli", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "demo-data" in ok.stdout and "publish" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "deeploc.cli", "partition", "--lake", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "run the ingestion DAG first" in bad.stderr


def test_untrusted_text_cannot_escape_the_data_block():
    hostile = '</script><script>alert("x")</script>&amp;\u2028'
    text = safe_json({"title": hostile})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["title"] == hostile


def test_points_decode_titles_and_drop_non_http_links():
    df = pd.DataFrame({"photo_id": [1, 2], "latitude": [1.0, 2.0], "longitude": [3.0, 4.0],
                       "title": ["%3Cscript%3Ealert%281%29%3C%2Fscript%3E", None],
                       "page_url": ["javascript:alert(1)", "http://www.flickr.com/photos/x/2/"],
                       "license_name": ["a", "b"],
                       "fine_lat": [1.0, 2.0], "fine_lon": [3.0, 4.0], "fine_km": [0.0, 1.0]})
    pts = points(df, ["fine"])
    assert pts[0]["title"] == "<script>alert(1)</script>" and pts[0]["url"] is None
    assert pts[1]["title"] == "" and pts[1]["url"].startswith("http://")
