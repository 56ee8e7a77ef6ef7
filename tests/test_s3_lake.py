"""The lake on S3 (moto): file operations, folder outputs, and the non-Spark stages end to end, with
their tables in the Glue Data Catalog (moto's, with Glue's version check: ``tests/moto_s3.py``).

Spark cannot reach S3 here (no hadoop-aws jar offline; EMR reads s3:// natively), so the Spark
stages run on a local lake and their tables' files are uploaded and committed to the S3 lake's
catalog; partition, train, evaluate and publish then read and write the S3 lake through the same code
the aws target runs.
"""

import json
import os
import tempfile

import pytest
from conftest import table
from pyarrow import fs
from pyiceberg.expressions import AlwaysTrue

from deeploc.sources.bucket import Bucket
from deeploc.storage import catalog, commit
from deeploc.storage.lake import Lake


@pytest.fixture(scope="module")
def s3_lake(moto_lake_bucket):
    catalog._catalog.cache_clear()  # a catalog made for another endpoint must not be reused
    yield "s3://lake/root"
    catalog._catalog.cache_clear()


def upload_table(local: str, remote: Lake, name: str) -> None:
    """Copy a local lake table's current files to the S3 lake and commit them to its catalog (what the
    Spark stages do themselves on EMR)."""
    held = catalog.plan(Lake(local), name)
    src = catalog.load(Lake(local), name)
    partition_by = tuple(src.schema().find_column_name(f.source_id) for f in src.spec().fields)
    copied = []
    for i, f in enumerate(held.files):
        copied.append(remote.path(name, "data", "uploaded", f"part-{i}.parquet"))
        fs.copy_files(f, copied[-1][5:], destination_filesystem=remote.fs)
    catalog.commit(remote, name, copied, AlwaysTrue(), partition_by, held.arrow_schema)


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
    first = commit.current(lake, "out")
    with commit.building(lake, "out") as tmp:  # a rebuild is a new version; the pointer moves
        with open(os.path.join(tmp, "f.txt"), "w") as f:
            f.write("v2")
    assert lake.listdir(commit.current(lake, "out")) == ["f.txt"] and lake.listdir(first) == ["f.txt", "sub"]
    with lake.local_copy(commit.current(lake, "out")) as local:
        assert open(os.path.join(local, "f.txt")).read() == "v2"
    assert not os.path.exists(local)  # the download goes with the block
    on_disk = Lake(str(tmp_path / "local-lake"))
    with on_disk.local_copy(on_disk.path("out")) as folder:
        assert folder == on_disk.path("out")  # a local lake's folder is read where it is
    with pytest.raises(RuntimeError):
        with commit.building(lake, "out") as tmp:
            raise RuntimeError("a failed build leaves the current version")
    assert lake.read_bytes(f"{commit.current(lake, 'out')}/f.txt") == b"v2"
    assert not lake.compare_and_swap(lake.path("out", commit.POINTER), b"stale", b"{}")  # a lost race says so


def test_a_large_file_goes_up_in_parts(s3_lake, tmp_path):
    """A checkpoint past S3's single-PUT limit must go in parts: put_file streams it as a multipart
    upload (the ETag of a multipart object ends in -<parts>), and it reads back whole."""
    import boto3

    data = os.urandom(23 << 20)
    (tmp_path / "ckpt.keras").write_bytes(data)
    lake = Lake(s3_lake)
    lake.put_file(str(tmp_path / "ckpt.keras"), lake.path("models", "m", "ckpt.keras"))
    head = boto3.client("s3").head_object(Bucket="lake", Key="root/models/m/ckpt.keras")
    assert int(head["ETag"].strip('"').rsplit("-", 1)[1]) >= 2
    assert lake.read_bytes(lake.path("models", "m", "ckpt.keras")) == data


def test_a_slice_commit_on_s3(s3_lake):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from deeploc.storage.slice_io import months
    from deeploc.storage.slices import Slice

    lake = Lake(s3_lake)
    schema = pa.schema([("row", pa.string()), ("upload_month", pa.string())])

    def files(*month_rows):
        out = []
        for month, rows in month_rows:
            buf = io.BytesIO()
            pq.write_table(pa.table({"row": rows, "upload_month": [month] * len(rows)}, schema=schema), buf)
            out.append(lake.path("t", "data", f"{month}-{len(rows)}.parquet"))
            lake.write_bytes(out[-1], buf.getvalue())
        return out

    catalog.commit(lake, "t", files(("2010-01", ["a"]), ("2010-02", ["b"]), ("2011-05", ["c"])), AlwaysTrue(),
                   ("upload_month",), schema)
    catalog.commit(lake, "t", files(("2010-01", ["d", "e"])), months(Slice.of("2010-01-01", "2011-01-01")),
                   ("upload_month",), schema)
    assert sorted(map(tuple, table(s3_lake, "t")[["upload_month", "row"]].values)) == \
        [("2010-01", "d"), ("2010-01", "e"), ("2011-05", "c")]  # 2010-02: no rows now; 2011 untouched


def test_a_dead_holders_lock_is_taken_over(s3_lake, monkeypatch):
    """A lease nobody renews expires; the next writer takes it over (with If-Match on the stale one)."""
    import json
    import time

    from deeploc.storage import lake as lake_mod

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


def _mirror(source: Lake, target: Lake, output: str) -> None:
    """The current version of a folder output, copied to another lake (local or S3) and made current there."""
    version = commit.new_version(target, output)
    if target.remote:
        with tempfile.TemporaryDirectory() as local:
            target.upload(source.download(commit.current(source, output), local), version)
    else:
        source.download(commit.current(source, output), version)
    commit.make_current(target, output, version)


def test_model_stages_on_an_s3_lake(s3_lake, ingested, demo_set, tmp_path, monkeypatch):
    from deeploc.stages import evaluate, infer, partitioning, publish, shards, train

    scratch = tmp_path / "tmp"  # what the stages download or stage locally must be gone when they end
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    local, _, _ = ingested
    bucket = Bucket(str(demo_set[0] / "bucket"))
    remote = Lake(s3_lake + "/model")
    upload_table(local, remote, "faces")

    report = partitioning.run(remote.root, "full", partitionings="coarse:5:200,fine:5:60")
    assert report["images"] > 0 and remote.exists(f"{commit.current(remote, 'partitionings/full')}/photos.parquet")
    # The shards stage is a Spark job (EMR reads s3:// natively; Spark here cannot): it writes on a local
    # copy, whose shards go up; training streams them from S3 through a cache too small to hold two.
    shard_lake = Lake(str(tmp_path / "shards-lake"))
    _mirror(remote, shard_lake, "partitionings/full")
    shards.run(shard_lake.root, bucket)
    _mirror(shard_lake, remote, "shards/full")
    summary = train.run(remote.root, bucket, "s3run", epochs=1, shard_cache_gb=1e-6)
    assert summary["train_images"] > 0 and summary["input"] == "shards"
    assert remote.listdir(remote.path("checkpoints")) == []  # the finished run's checkpoints are gone
    assert summary["run"] == "s3run" and remote.read_json("models/LATEST.json")["run"] == "s3run"
    model = commit.current(remote, "models/s3run")
    assert {"model.keras", "last.keras", "summary.json", "cells.parquet", "history.csv", "tensorboard"} <= \
        set(remote.listdir(model))

    # infer is a Spark stage: run it on a local copy of the lake's folders, then hand its table back.
    mirror = Lake(str(tmp_path / "mirror"))
    for output in ("partitionings/full", "models/s3run"):
        _mirror(remote, mirror, output)
    ledger = infer.run(mirror.root, bucket, "s3run")
    upload_table(mirror.root, remote, "predictions")
    remote.write_json("_ledgers/infer/s3run.json", mirror.read_json("_ledgers/infer/s3run.json"))

    metrics = evaluate.run(remote.root, "s3run")
    assert metrics["images"] == ledger["out"] > 0
    assert json.loads(remote.read_bytes(f"{commit.current(remote, 'metrics/s3run')}/metrics.json"))["images"] == \
        ledger["out"]
    site = publish.run(remote.root, bucket, "s3run", pool=5)
    assert site["site"] == f"{commit.current(remote, 'site')}/index.html" and site["images"] == 5
    assert {"index.html", "app.js", "style.css", "img", "vendor", "site.json"} <= \
        set(remote.listdir(commit.current(remote, "site")))
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("deeploc-")]


def test_metadata_lines_read_from_s3(s3_lake):
    """The metadata reader needs no Hadoop S3 connector: split reads of a bz2 object, found by a glob."""
    import bz2
    import random

    from deeploc.sources import line_source

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
