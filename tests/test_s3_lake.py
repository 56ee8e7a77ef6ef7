"""The lake on S3 (moto): file operations, the commit protocol, and the non-Spark stages end to end.

Spark cannot reach S3 here (no hadoop-aws jar offline; EMR reads s3:// natively), so the Spark
stages run on a local lake and their tables are uploaded; partition, train, evaluate and publish then
read and write the S3 lake through the same code the aws target runs.
"""

import json
import os

import pytest
from pyarrow import fs

from deeploc import commit
from deeploc.bucket import Bucket
from deeploc.lake import Lake
from deeploc.slices import Slice

@pytest.fixture(scope="module")
def s3_lake(moto_lake_bucket):
    return "s3://lake/root"


def test_files_json_and_folders(s3_lake, tmp_path):
    lake = Lake(s3_lake)
    assert lake.path("a", "b") == "s3://lake/root/a/b"
    lake.write_json("x/one.json", {"n": 1})
    assert lake.read_json("x/one.json") == {"n": 1} and lake.exists(lake.path("x", "one.json"))
    assert lake.mtime(lake.path("x", "one.json")) > 0 and lake.mtime(lake.path("x", "none.json")) is None
    with commit.building(lake, "out") as tmp:
        with open(os.path.join(tmp, "f.txt"), "w") as f:
            f.write("v1")
        os.makedirs(os.path.join(tmp, "sub"))
        with open(os.path.join(tmp, "sub", "g.txt"), "w") as f:
            f.write("g")
    with commit.building(lake, "out") as tmp:  # a rebuild replaces the whole folder
        with open(os.path.join(tmp, "f.txt"), "w") as f:
            f.write("v2")
    assert lake.listdir(lake.path("out")) == ["f.txt"]
    local = lake.download("out")
    assert open(os.path.join(local, "f.txt")).read() == "v2"
    with pytest.raises(RuntimeError):
        with commit.building(lake, "out") as tmp:
            raise RuntimeError("a failed build leaves the old output")
    assert lake.read_bytes(lake.path("out", "f.txt")) == b"v2"
    assert not [n for n in lake.listdir(lake.path()) if n.startswith("_") and n != "_locks"]


def test_publish_months_on_s3(s3_lake):
    lake = Lake(s3_lake)
    for month in ("2010-01", "2010-02", "2011-05"):
        lake.write_bytes(lake.path("t", f"upload_month={month}", "old.parquet"), b"old")
    staged = commit.new_staging(lake, "t")
    lake.write_bytes(f"{staged}/upload_month=2010-01/new.parquet", b"new")
    commit.publish_months(lake, "t", staged, Slice.of("2010-01-01", "2011-01-01"))
    assert commit.months_in(lake, lake.path("t")) == ["2010-01", "2011-05"]  # 2010-02 got no rows
    assert lake.listdir(lake.path("t", "upload_month=2010-01")) == ["new.parquet"]
    assert lake.listdir(lake.path("t", "upload_month=2011-05")) == ["old.parquet"]  # outside the slice
    assert not [n for n in lake.listdir(lake.path("t")) if n.startswith("_")]
    outside = commit.new_staging(lake, "t")
    lake.write_bytes(f"{outside}/upload_month=2012-01/x.parquet", b"x")
    with pytest.raises(RuntimeError, match="outside the slice"):
        commit.publish_months(lake, "t", outside, Slice.of("2010-01-01", "2010-02-01"))


def test_a_dead_holders_lock_is_taken_over(s3_lake, monkeypatch):
    """A lease nobody renews expires; the next writer takes it over (with If-Match on the stale one)."""
    import json
    import time

    from deeploc import lake as lake_mod

    lake = Lake(s3_lake)
    lake.write_bytes(lake.path("_locks", "stale.lock"), json.dumps({"owner": "gone", "expires": time.time() - 1}).encode())
    monkeypatch.setattr(lake_mod, "LEASE_S", 2.0)
    with lake.lock("stale", wait_s=10):
        held = json.loads(lake.read_bytes(lake.path("_locks", "stale.lock")))
        assert held["owner"] != "gone"
        time.sleep(1.5)  # renewed meanwhile (every LEASE_S / 4)
        assert json.loads(lake.read_bytes(lake.path("_locks", "stale.lock")))["expires"] > held["expires"]
    assert not lake.exists(lake.path("_locks", "stale.lock"))
    with lake.lock("busy", wait_s=10):
        with pytest.raises(TimeoutError, match="still held"):
            with lake.lock("busy", wait_s=0.5):
                pass


def test_model_stages_on_an_s3_lake(s3_lake, ingested, demo_set, tmp_path):
    from deeploc.stages import evaluate, infer, partitioning, publish, train

    local, _, _ = ingested
    bucket = Bucket(str(demo_set[0] / "bucket"))
    remote = Lake(s3_lake + "/model")
    fs.copy_files(f"{local}/faces", remote.path("faces")[5:], destination_filesystem=remote.fs)

    report = partitioning.run(remote.root, "full", partitionings="coarse:5:200,fine:5:60")
    assert report["images"] > 0 and remote.exists(remote.path("partitionings", "full", "photos.parquet"))
    # The shards stage is a Spark job (EMR reads s3:// natively; Spark here cannot): the images path.
    summary = train.run(remote.root, bucket, "s3run", epochs=1, input="images")
    assert remote.listdir(remote.path("checkpoints")) == []  # the finished run's checkpoints are gone
    assert summary["run"] == "s3run" and remote.read_json("models/LATEST.json")["run"] == "s3run"
    assert {"model.keras", "last.keras", "summary.json", "cells.parquet", "history.csv", "tensorboard"} <= \
        set(remote.listdir(remote.path("models", "s3run")))

    # infer is a Spark stage: run it on a local copy of the lake, then hand its output back.
    mirror = str(tmp_path / "mirror")
    for rel in ("partitionings", "models"):
        remote.download(rel, os.path.join(mirror, rel))
    ledger = infer.run(mirror, bucket, "s3run")
    fs.copy_files(f"{mirror}/predictions", remote.path("predictions")[5:], destination_filesystem=remote.fs)

    metrics = evaluate.run(remote.root, "s3run")
    assert metrics["images"] == ledger["out"] > 0
    assert json.loads(remote.read_bytes(remote.path("metrics", "s3run", "metrics.json")))["images"] == ledger["out"]
    site = publish.run(remote.root, bucket, "s3run", pool=5)
    assert site["site"] == remote.path("site", "index.html") and site["images"] == 5
    assert {"index.html", "app.js", "style.css", "img", "vendor", "site.json"} <= set(remote.listdir(remote.path("site")))


def test_metadata_lines_read_from_s3(s3_lake):
    """The metadata reader needs no Hadoop S3 connector: split reads of a bz2 object, found by a glob."""
    import bz2
    import random

    from deeploc import line_source

    rnd = random.Random(5)
    lines = [f"{i}\t{rnd.randbytes(40).hex()}".encode() for i in range(30_000)]
    with fs.FileSystem.from_uri(s3_lake)[0].open_output_stream("lake/in/part-0.bz2", compression=None) as out:
        out.write(bz2.compress(b"\n".join(lines) + b"\n", 1))
    files = line_source.list_inputs(["s3://lake/in/*.bz2"])
    assert [f.path for f in files] == ["s3://lake/in/part-0.bz2"]
    chunks = line_source.plan(files, 100_000)
    assert len(chunks) > 2 and {c.codec for c in chunks} == {"bz2"}
    got = [r for c in chunks for b in line_source.read_chunk(c) for r in b.column("raw").to_pylist()]
    assert got == lines
