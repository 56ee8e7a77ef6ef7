"""The commit protocol: outputs swapped in under a lock, months of one slice only, staging of live runs
never touched; and any number of runs writing one lake at once, in separate processes, on a local
folder and on S3, end with exactly the rows of a sequential run."""

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from conftest import REPO

from deeploc import commit
from deeploc.lake import Lake
from deeploc.slices import Slice

WRITER = REPO / "tests" / "lake_writer.py"


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


def test_publish_months_swaps_only_the_slice(tmp_path):
    lake = Lake(str(tmp_path))
    for month in ("2010-01", "2010-02", "2011-01"):
        _touch(lake.path("t", f"upload_month={month}", "old"))
    staged = commit.new_staging(lake, "t")
    _touch(os.path.join(staged, "upload_month=2010-02", "new"))
    commit.publish_months(lake, "t", staged, Slice.of("2010-01-01", "2011-01-01"))
    assert sorted(os.listdir(lake.path("t"))) == ["upload_month=2010-02", "upload_month=2011-01"]  # 2010-01: no rows now
    assert os.listdir(lake.path("t", "upload_month=2010-02")) == ["new"]
    assert os.listdir(lake.path("t", "upload_month=2011-01")) == ["old"]


def test_rows_outside_the_slice_are_refused(tmp_path):
    lake = Lake(str(tmp_path))
    staged = commit.new_staging(lake, "t")
    _touch(os.path.join(staged, "upload_month=1999-01", "x"))
    with pytest.raises(RuntimeError, match="outside the slice"):
        commit.publish_months(lake, "t", staged, Slice.of("2010-01-01", "2010-02-01"))


def test_only_abandoned_staging_is_swept(tmp_path):
    lake = Lake(str(tmp_path))
    old = (datetime.now(timezone.utc) - commit.ABANDONED_AFTER - timedelta(minutes=1)).strftime("%Y%m%dT%H%M%S")
    young = (datetime.now(timezone.utc) - commit.ABANDONED_AFTER + timedelta(minutes=5)).strftime("%Y%m%dT%H%M%S")
    for name in (f"_staging-{old}-a", f"_trash-{old}-b", f"_staging-{young}-c", "upload_month=2010-01"):
        os.makedirs(lake.path("t", name))
    assert sorted(commit.sweep(lake, "t")) == [f"_staging-{old}-a", f"_trash-{old}-b"]
    assert sorted(os.listdir(lake.path("t"))) == [f"_staging-{young}-c", "upload_month=2010-01"]


def test_a_failed_build_leaves_the_old_output(tmp_path):
    lake = Lake(str(tmp_path))
    with commit.building(lake, "models/r") as tmp:
        _touch(os.path.join(tmp, "v1"))
    with pytest.raises(RuntimeError):
        with commit.building(lake, "models/r") as tmp:
            _touch(os.path.join(tmp, "v2"))
            raise RuntimeError("killed halfway")
    assert os.listdir(lake.path("models", "r")) == ["v1"] and os.listdir(lake.path("models")) == ["r"]


def test_slice_names():
    assert Slice.of("2004-01-01", "2005-01-01").name == "2004"
    assert Slice.of("2010-11-01", "2010-12-01").name == "2010-11"
    assert Slice.of("2010-11-01", "2011-02-01").name == "2010-11..2011-01"
    assert Slice.of("2010-11-01", None).name == "2010-11.." and Slice.of().name == "all"
    s = Slice.of("2010-11-01", "2011-02-01")
    assert [s.covers(m) for m in ("2010-10", "2010-11", "2011-01", "2011-02")] == [False, True, True, False]
    with pytest.raises(ValueError):
        Slice.of("2011-02-01", "2010-11-01")


def _spawn(*args, env=None):
    return subprocess.Popen([sys.executable, str(WRITER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _wait(procs, timeout=600):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _table(root, table):
    df = pd.read_parquet(os.path.join(root, table))
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.mark.slow
def test_slice_runs_at_once_give_the_sequential_result(demo_set, tmp_path):
    """Four processes at once on one local lake, one per yearly slice and one repeating a slice, each
    running parse and the slice's three Spark stages, against the same runs one after the other."""
    data, manifest = demo_set
    bucket, meta = str(data / "bucket"), str(data / "metadata")
    years = ["2009", "2010", "2011", "2010"]
    slices = [(f"{y}-01-01", f"{int(y) + 1}-01-01") for y in years]
    sequential, concurrent = str(tmp_path / "sequential"), str(tmp_path / "concurrent")
    env = {"DEEPLOC_SPARK_MASTER": "local[1]", "DEEPLOC_SPARK_DRIVER_MEMORY": "1g"}
    seq = [_wait([_spawn("stages", sequential, bucket, meta, *s, env=env)])[0] for s in slices[:3]]
    con = _wait([_spawn("stages", concurrent, bucket, meta, *s, env=env) for s in slices])
    assert sorted(r["parse"] for r in con) == [0, 0, 0, len(os.listdir(meta))]  # parsed once; the others waited
    assert [{k: r[k] for k in ("metadata", "availability", "faces")} for r in con[:3]] == \
        [{k: r[k] for k in ("metadata", "availability", "faces")} for r in seq]
    assert con[3]["faces"] == con[1]["faces"]
    for table in ("metadata", "images", "faces", "rejects/metadata", "rejects/availability", "rejects/faces"):
        assert _table(concurrent, table).equals(_table(sequential, table)), table
        assert not [n for n in os.listdir(os.path.join(concurrent, table)) if n.startswith("_")], table


@pytest.mark.slow
def test_publishing_at_once_on_s3(tmp_path):
    """Eight processes publish slices of one table on a moto S3 server at once (two per slice): every
    month ends with exactly its rows, and nothing is left behind."""
    import boto3

    from deeploc import moto_s3

    server, url = moto_s3.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2",
           "AWS_ENDPOINT_URL": url}
    try:
        boto3.client("s3", endpoint_url=url, region_name="us-west-2", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(
            Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        years = [2008, 2009, 2010, 2011] * 2
        _wait([_spawn("months", "s3://lake/root", "t", f"{y}-01-01", f"{y + 1}-01-01", env=env) for y in years])
        os.environ.update(env)
        lake = Lake("s3://lake/root")
        names = lake.listdir(lake.path("t"))
        assert names == [f"upload_month={y}-{m:02d}" for y in range(2008, 2012) for m in range(1, 13)]
        sys.path.insert(0, str(REPO / "tests"))
        from lake_writer import rows_of

        for name in names:
            got = sorted(lake.read_parquet(lake.path("t", name))["row"])
            assert got == sorted(rows_of(name.split("=")[1])), name
        assert lake.listdir(lake.path("_locks")) == []  # every lock released
    finally:
        for k in env:
            os.environ.pop(k, None)
        server.stop()
