"""``deeploc plan``: sizes from the lake, checks that name the setting to change, exit 3 when one fails;
class counts that hold for the partitioning stage on millions of points; the account checked on moto."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import current, put_table

from deeploc import aws_config, plan
from deeploc.learn import splits
from deeploc.sources.bucket import Bucket
from deeploc.storage.lake import Lake


def _plan(lake, bucket, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "deeploc.cli", "plan", "--lake", str(lake), "--bucket", str(bucket),
                           *extra], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_the_demo_lake_plans_and_fits(ingested, demo_set):
    lake, e, _ = ingested
    res = _plan(lake, demo_set[0] / "bucket")
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout)
    assert got["ok"] and got["data"]["photos"] == e["faces_out"]  # the demo profile samples nothing
    assert sum(got["data"]["split"].values()) == e["faces_out"]
    assert [p["name"] for p in got["partitionings"]] == ["coarse", "medium", "fine"]
    assert all(p["classes"] > 1 for p in got["partitionings"])
    assert got["shards"]["sampled"] > 10 and got["shards"]["per_photo"] > 1000
    assert got["shards"]["total_bytes"] == got["shards"]["per_photo"] * (got["data"]["split"]["train"]
                                                                          + got["data"]["split"]["val"])
    assert got["training"]["disk_needed_gb"] >= plan.SYSTEM_GB and got["vcpus"]["standard_at_once"] > 0
    assert got["cost"]["on_demand"] > got["cost"]["with_spot"] > 0
    assert {c["name"] for c in got["checks"]} >= {"disk", "partitioning_scale", "quota_standard", "quota_gpu"}
    assert "classes" in res.stderr and "ok" in res.stderr  # the table a person reads


def test_a_check_that_fails_names_its_setting(ingested, demo_set):
    lake, _, _ = ingested
    res = _plan(lake, demo_set[0] / "bucket", env={"DEEPLOC_AWS": json.dumps({"train_volume_gb": 1})})
    assert res.returncode == 3, res.stderr[-2000:]
    failed = [c for c in json.loads(res.stdout)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["disk"] and "train_volume_gb" in failed[0]["message"]
    assert "FAILED" in res.stderr


def test_an_unattended_run_stays_within_its_budget(ingested, demo_set):
    lake, e, _ = ingested
    got = plan.model(Lake(lake), Bucket(str(demo_set[0] / "bucket")), "demo", "local", aws_config.DEFAULTS,
                     budget={"photos": 10, "dollars": 1_000})
    failed = {c["name"]: c["message"] for c in got["checks"] if not c["ok"]}
    assert list(failed) == ["budget_photos"] and "deeploc_budget" in failed["budget_photos"]


def test_shard_bytes_are_what_the_shards_stage_writes(trained):
    """The plan's bytes a photo, measured on a sample of the training images, against the shard files
    the shards stage wrote for all of them."""
    lake, bucket, _, _, _ = trained
    folder = current(lake, "shards/full")
    index = json.loads((folder / "index.json").read_text())
    shards = [s for split in index["splits"].values() for s in split]
    per_photo = sum((folder / s["file"]).stat().st_size for s in shards) / sum(s["records"] for s in shards)
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet")
    keys = photos.loc[photos["split"] == "train", "object_key"].tolist()
    measured = plan.shard_bytes(Lake(str(lake)), bucket, keys, index["short_side"])
    assert abs(measured["per_photo"] - per_photo) <= 0.15 * per_photo, (measured, per_photo)


@pytest.mark.slow
def test_class_counts_for_millions_of_photos_hold_for_the_stage(tmp_path):
    """Two million photos spread like Flickr's (GeoNames places, population-weighted): the plan's classes
    for the reference taus are the partitioning stage's, within 10 %; and the report's taus applied to
    them are refused."""
    from deeploc.demo.places import sample_locations
    from deeploc.stages import partitioning

    n = 2_000_000
    lat, lon, _ = sample_locations(np.random.default_rng(5), n)
    ids = np.arange(n, dtype=np.int64) * 7 + 11
    put_table(tmp_path, "faces", pd.DataFrame({
        "photo_id": ids, "object_key": "k", "latitude": lat, "longitude": lon, "face_ratio": 0.0, "title": "",
        "page_url": "", "license_name": "", "license_url": "", "user_nsid": [f"u{i % 40_000}" for i in range(n)],
        "user_nickname": "", "upload_month": np.where(ids % 2 == 0, "2010-01", "2010-02")}))
    spec = "coarse:50:5000,medium:50:2000,fine:50:1000"
    chosen, total = plan.photos(Lake(str(tmp_path)), "full", 0.035, None, "user")
    planned = plan.classes(chosen, spec)
    built = {p["name"]: p["classes"] for p in
             partitioning.run(str(tmp_path), "full", partitionings=spec)["partitionings"]}
    assert total == n and set(planned) == set(built)
    assert all(abs(planned[k] - built[k]) <= 0.1 * built[k] for k in built), (planned, built)
    # A sample read with only its likely rows in memory is the sample of all photos.
    sample, _ = plan.photos(Lake(str(tmp_path)), "full", 0.035, 150_000, "user")
    assert set(sample["photo_id"]) == set(ids[splits.sample(ids, 150_000)])


def test_taus_applied_to_many_times_their_photos_are_refused():
    assert plan.scale_check("coarse:5:500,fine:5:100", 154_052, 300_000).ok
    refused = plan.scale_check("coarse:5:500,fine:5:100", 154_052, 3_000_000)
    assert not refused.ok and "max_images" in refused.message and "19.5x" in refused.message
