"""How output enters the lake: Iceberg commits that replace exactly what a run replaces, folder outputs
made current by a pointer, and old snapshots, versions and files removed only when no run can need
them; and any number of runs writing one lake at once, in separate processes, on a local folder and on
S3 with Glue, end with exactly the rows of a sequential run. Readers only ever see whole commits, and a
writer killed in the middle of its commit leaves the previous snapshot and the next run green."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from conftest import REPO, table

from deeploc.storage import catalog, commit
from deeploc.storage.lake import Lake
from deeploc.storage.slice_io import months
from deeploc.storage.slices import Slice

sys.path.insert(0, str(REPO / "tests"))
from lake_writer import months as write_months  # noqa: E402
from lake_writer import rows_of  # noqa: E402

WRITER = REPO / "tests" / "lake_writer.py"
SCHEMA = pa.schema([("row", pa.string()), ("upload_month", pa.string())])


def _spawn(*args, env=None):
    return subprocess.Popen([sys.executable, str(WRITER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _wait(procs, timeout=600):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr[-3000:]
        out.append((json.loads(stdout.strip().splitlines()[-1]), stderr))
    return out


def _by_month(root, name="t") -> dict[str, list[str]]:
    rows = table(root, name)
    return {m: sorted(g["row"]) for m, g in rows.groupby("upload_month")}


def _expected(*years) -> dict[str, list[str]]:
    return {f"{y}-{m:02d}": sorted(rows_of(f"{y}-{m:02d}")) for y in years for m in range(1, 13)}


def test_a_commit_replaces_exactly_its_slice(tmp_path):
    lake = str(tmp_path)
    write_months(lake, "t", "2010-01-01", "2011-01-01")
    write_months(lake, "t", "2011-01-01", "2012-01-01")
    first = catalog.history(Lake(lake), "t")
    write_months(lake, "t", "2010-01-01", "2011-01-01", "3")  # the same rows, in three files a month
    assert _by_month(lake) == _expected(2010, 2011)
    history = catalog.history(Lake(lake), "t")
    assert len(history) == len(first) + 1 and history[-1]["current"] and history[-1]["scope"] == "2010"
    assert (history[-1]["added_rows"], history[-1]["removed_rows"]) == (78, 78)  # 1 + 2 + ... + 12 rows a year
    # An empty slice removes what the slice held, and nothing else.
    catalog.commit(Lake(lake), "t", [], months(Slice.of("2011-03-01", "2011-05-01")), ("upload_month",), SCHEMA)
    assert sorted(_by_month(lake)) == sorted(m for m in _expected(2010, 2011) if m not in ("2011-03", "2011-04"))


def test_rows_outside_the_slice_are_refused(spark, tmp_path):
    from deeploc.storage.slice_io import write_slice

    labelled = spark.createDataFrame([(1, None, "1999-01")], "photo_id long, reject_reason string, upload_month string")
    with pytest.raises(RuntimeError, match="outside the slice"):
        write_slice(Lake(str(tmp_path)), "metadata", labelled, 1, "metadata", ["photo_id"], ["photo_id"],
                    Slice.of("2010-01-01", "2010-02-01"), None, materialize=False)
    assert catalog.load(Lake(str(tmp_path)), "metadata") is None and not os.listdir(tmp_path / "metadata" / "data")


def test_maintenance_removes_only_what_no_run_can_need(tmp_path):
    lake = Lake(str(tmp_path))
    for scope in ("2010-01-01", "2010-01-01", "2011-01-01"):  # the second replaces the first's files
        write_months(lake.root, "t", scope, f"{int(scope[:4]) + 1}-01-01")
    snapshots = [s["snapshot_id"] for s in catalog.history(lake, "t")]
    abandoned = lake.path("t", "data", "killed-run", "part-0.parquet")   # a killed run's file: never committed
    young = lake.path("t", "data", "live-run", "part-0.parquet")          # a live run's file: not committed yet
    for path in (abandoned, young):
        lake.write_bytes(path, b"PAR1")
    old = time.time() - catalog.ABANDONED_AFTER.total_seconds() - 60
    os.utime(abandoned, (old, old))
    assert catalog.maintain(lake, "t") == {"expired": 0, "removed_files": 1}  # nothing expired yet
    assert not os.path.exists(abandoned) and os.path.exists(young)

    # Later: the first two snapshots were replaced more than RETAIN ago; the first run's data files go too.
    replaced = [f for f in lake.files(lake.path("t", "data"), ".parquet") if f not in catalog.plan(lake, "t").files
                and "live-run" not in f]
    assert len(replaced) == 12
    for f in lake.files(lake.path("t")):
        os.utime(f, (old, old))
    later = datetime.now(timezone.utc) + catalog.RETAIN + timedelta(minutes=1)
    assert catalog.maintain(lake, "t", now=later)["expired"] == 2
    assert [s["snapshot_id"] for s in catalog.history(lake, "t")] == snapshots[2:]
    assert not any(os.path.exists(f) for f in replaced) and _by_month(lake.root) == _expected(2010, 2011)


def test_a_folder_output_is_made_current_by_its_pointer(tmp_path):
    lake = Lake(str(tmp_path))
    with commit.building(lake, "models/r") as tmp:
        open(os.path.join(tmp, "v1"), "w").close()
    first = commit.current(lake, "models/r")
    with pytest.raises(RuntimeError):
        with commit.building(lake, "models/r") as tmp:
            open(os.path.join(tmp, "v2"), "w").close()
            raise RuntimeError("killed halfway")
    assert commit.current(lake, "models/r") == first and os.listdir(first) == ["v1"]
    with commit.building(lake, "models/r") as tmp:
        open(os.path.join(tmp, "v3"), "w").close()
    assert os.listdir(commit.current(lake, "models/r")) == ["v3"]
    assert os.path.exists(first)  # a reader of the first version may still be reading it
    pointer = json.loads(open(lake.path("models", "r", commit.POINTER)).read())
    assert [s["version"] for s in pointer["superseded"]] == [os.path.basename(first)]


def test_slice_names():
    assert Slice.of("2004-01-01", "2005-01-01").name == "2004"
    assert Slice.of("2010-11-01", "2010-12-01").name == "2010-11"
    assert Slice.of("2010-11-01", "2011-02-01").name == "2010-11..2011-01"
    assert Slice.of("2010-11-01", None).name == "2010-11.." and Slice.of().name == "all"
    s = Slice.of("2010-11-01", "2011-02-01")
    assert [s.covers(m) for m in ("2010-10", "2010-11", "2011-01", "2011-02")] == [False, True, True, False]
    with pytest.raises(ValueError):
        Slice.of("2011-02-01", "2010-11-01")


@pytest.mark.slow
def test_slice_runs_at_once_give_the_sequential_result(demo_set, tmp_path):
    """Three processes at once on one local lake, two on different yearly slices and one repeating a
    slice, each running parse and the slice's three Spark stages, against the same slices run one after the
    other by one process on a lake of its own (started alongside, to use the cores the others leave)."""
    data, manifest = demo_set
    bucket, meta = str(data / "bucket"), str(data / "metadata")
    years = ["2009", "2010", "2010"]
    slices = [(f"{y}-01-01", f"{int(y) + 1}-01-01") for y in years]
    sequential, concurrent = str(tmp_path / "sequential"), str(tmp_path / "concurrent")
    env = {"DEEPLOC_SPARK_DRIVER_MEMORY": "1g"}
    reference = _spawn("stages", sequential, bucket, meta, *[b for s in slices[:2] for b in s], env=env)
    con = [r for r, _ in _wait([_spawn("stages", concurrent, bucket, meta, *s, env=env) for s in slices])]
    ((seq, _),) = _wait([reference])
    assert sorted(r["parse"] for r in con) == [0, 0, len(os.listdir(meta))]  # parsed once; the others waited
    assert [r["slices"][0] for r in con[:2]] == seq["slices"]
    assert con[2]["slices"][0]["faces"] == con[1]["slices"][0]["faces"]
    for name in ("metadata", "images", "faces", "rejects/metadata", "rejects/availability", "rejects/faces"):
        a, b = (table(lake, name) for lake in (concurrent, sequential))
        assert a.sort_values(list(a.columns)).reset_index(drop=True).equals(
            b.sort_values(list(b.columns)).reset_index(drop=True)), name


@pytest.mark.slow
def test_readers_see_whole_commits_and_lost_races_are_redone(tmp_path):
    """Three slices written at once (eight files a month) while another process reads the table in a loop:
    every read sees each year whole or not at all; the writers that lost a race committed again."""
    lake, done = str(tmp_path), tmp_path.parent / f"{tmp_path.name}.done"
    reader = _spawn("watch", lake, "t", str(done))
    writers = [_spawn("months", lake, "t", f"{y}-01-01", f"{y + 1}-01-01", "8", "3") for y in (2008, 2009, 2010)]
    results = _wait(writers)
    done.touch()  # the reader's last read comes after every commit
    reads = _wait([reader])[0][0]["reads"]
    assert reads[-1] == {"2008": 78, "2009": 78, "2010": 78}  # the read after the last commit
    assert all(n == 78 for seen in reads for n in seen.values()), [r for r in reads if set(r.values()) - {78}][:3]
    assert _by_month(lake) == _expected(2008, 2009, 2010)
    redone = sum(stderr.count("committing again on the new state") for _, stderr in results)
    assert redone >= 2  # three tries built on one state of the table: two lost the race


@pytest.mark.slow
def test_a_writer_killed_in_its_commit(tmp_path):
    """SIGKILL at several moments of a commit (reading footers, writing manifests and metadata): the
    table still reads its previous snapshot, and the next run of the slice is green and exact."""
    lake = str(tmp_path)

    def commit_then(kill_after: float | None) -> float:
        proc = _spawn("months", lake, "t", "2010-01-01", "2011-01-01", "20")
        assert proc.stdout.readline().strip() == "committing"
        t0 = time.monotonic()
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        return time.monotonic() - t0

    took = commit_then(None)  # a whole commit, timed: the kills below fall across it
    for share in (0.05, 0.25, 0.5, 0.75, 0.9, 0.97):
        commit_then(share * took)
        assert _by_month(lake) == _expected(2010), share  # old or new snapshot: the same rows, whole
    _wait([_spawn("months", lake, "t", "2010-01-01", "2011-01-01")])
    assert _by_month(lake) == _expected(2010)


@pytest.mark.slow
def test_publishing_at_once_on_s3_with_glue(tmp_path):
    """Eight processes commit slices of one table on S3 with the Glue catalog (moto server) at once, two
    per slice: every month ends with exactly its rows, and no lock was needed."""
    import boto3

    import moto_s3

    server, url = moto_s3.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2",
           "AWS_ENDPOINT_URL": url}
    saved = {k: os.environ.get(k) for k in env}
    try:
        os.environ.update(env)
        boto3.client("s3").create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        years = [2008, 2009, 2010, 2011] * 2
        _wait([_spawn("months", "s3://lake/root", "t", f"{y}-01-01", f"{y + 1}-01-01", env=env) for y in years])
        catalog._catalog.cache_clear()
        assert _by_month("s3://lake/root") == _expected(2008, 2009, 2010, 2011)
        glue = boto3.client("glue").get_table(DatabaseName="deeploc", Name="t")["Table"]
        assert glue["Parameters"]["table_type"] == "ICEBERG"  # what Athena reads
        assert len(catalog.history(Lake("s3://lake/root"), "t")) == 8
        assert Lake("s3://lake/root").listdir("s3://lake/root/_locks") == []
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        catalog._catalog.cache_clear()
        server.stop()
