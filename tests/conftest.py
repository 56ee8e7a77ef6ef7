"""Shared fixtures. Tests make their own data; the few that read ../shared skip when it is absent."""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "yfcc100m_dataset_sample.tsv"
sys.path.insert(0, str(REPO / "plugins"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every Spark JVM the suite starts (in this process, in the stages' subprocesses, in Airflow's task
# processes, which inherit the variable) lives seconds on tiny data: C1-compiled code and the serial
# collector do that work for about half the CPU (a session, a partitioned write and a read: 17 -> 9.6
# core-seconds on 2 cores), and the suite is CPU-bound. Users' runs keep the JVM's defaults.
# They also start from a class-data-sharing archive (``spark_classes``), set up by ``pytest_configure``.
JVM_FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
OWN_SPARK_ARGS = "PYSPARK_SUBMIT_ARGS" not in os.environ
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-java-options '{JVM_FLAGS}' pyspark-shell")
# Two workers share two cores: TensorFlow's op pool sized to both (its default) spins waiting on the
# other worker's core. One thread per process did three training tests for less CPU and time, alone: 105
# and 106 against 109 to 130 core-s, 88 against 92 to 110 s in pytest. Users keep the default.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# For the same reason every Spark session of the suite runs one task at a time (the local target's default
# is two): one Python worker per job instead of two, each importing what a stage needs (TensorFlow for
# inference). The site's chain, alone: 64 and 69 against 72 and 84 core-s, in the same time.
os.environ.setdefault("DEEPLOC_SPARK_MASTER", "local[1]")
# And the libraries that size their pools from OMP_NUM_THREADS (faiss's OpenMP, OpenBLAS, Arrow's CPU
# pool): the site's chain and the kNN tests, alone, alternated: 55 to 64 against 58 to 69 core-s.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Chromium's headless shell where it is installed: the same engine without the browser's UI, about a third
# less CPU on the site tests (3.9 against 5.7 core-s); the full browser otherwise.
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>window.owned=1</script><img src=x onerror="window.owned=2">'


def table(lake, name: str, columns=None, where=None):
    """A table of the lake as the catalog's current snapshot holds it (pandas)."""
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake

    return catalog.read(Lake(str(lake)), name, columns, where)[0]


def current(lake, output: str) -> Path:
    """The current version of a folder output (``models/<run>``, ``site``, ...)."""
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    found = commit.current(Lake(str(lake)), output)
    assert found is not None, f"{output} was never published in {lake}"
    return Path(found)


def put_table(lake, name: str, df, partition_by=("upload_month",), replace=None) -> None:
    """Commit ``df`` to a lake table (``deeploc.storage.catalog.write_frame``)."""
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake

    catalog.write_frame(Lake(str(lake)), name, df, tuple(partition_by), replace)


def share(src, dst, *tables: str) -> None:
    """Give the lake ``dst`` the current rows of ``src``'s tables: its catalog references ``src``'s files
    (nothing is copied; ``src`` must not change while ``dst`` is used)."""
    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake
    from pyiceberg.expressions import AlwaysTrue

    for name in tables:
        held = catalog.plan(Lake(str(src)), name)
        spec = catalog.load(Lake(str(src)), name).spec()
        schema = catalog.load(Lake(str(src)), name).schema()
        partition_by = tuple(schema.find_column_name(f.source_id) for f in spec.fields)
        catalog.commit(Lake(str(dst)), name, held.files, AlwaysTrue(), partition_by, held.arrow_schema)


@pytest.fixture(scope="session")
def spark():
    from deeploc.spark import session

    return session("deeploc-tests")


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory):
    """A small generated demo set (metadata, bucket, manifest), shared by the stage tests."""
    from deeploc.demo.generate import generate

    out = tmp_path_factory.mktemp("demo") / "set"
    manifest = generate(str(out), rows=900, seed=11, files=3)
    return out, manifest


@pytest.fixture(scope="session")
def ingested(spark, demo_set, tmp_path_factory):
    """The demo set through parse, metadata, availability and faces (one unbounded slice):
    (lake root, expected counts, the stages' ledgers). Tests must not change this lake."""
    from deeploc.sources.bucket import Bucket
    from deeploc.stages import availability, faces, metadata, parse

    out, manifest = demo_set
    lake, bucket = str(tmp_path_factory.mktemp("lake")), Bucket(str(out / "bucket"))
    ledgers = {"parse": parse.run([str(out / "metadata")], lake), "metadata": metadata.run(lake),
               "availability": availability.run(lake, bucket), "faces": faces.run(lake, bucket)}
    return lake, manifest["expected"], ledgers


@pytest.fixture(scope="session")
def trained(ingested, demo_set, tmp_path_factory):
    """A lake with the ingested faces, partitionings (by user), shards and a two-epoch demo model."""

    from deeploc.sources.bucket import Bucket
    from deeploc.stages import partitioning, shards, train

    lake = tmp_path_factory.mktemp("train-lake")
    share(ingested[0], lake, "faces")
    bucket = Bucket(str(demo_set[0] / "bucket"))
    report = partitioning.run(str(lake), "full", partitionings="coarse:5:200,fine:5:60")
    ledger = shards.run(str(lake), bucket)
    summary = train.run(str(lake), bucket, "t1", epochs=2)
    return lake, bucket, report, ledger, summary


@pytest.fixture(scope="session")
def site(trained, tmp_path_factory):
    """A lake with the trained run, its predictions (with GeoEstimation's five crops; one of them titled
    with markup), metrics and the site; and the predictions."""
    from pyiceberg.expressions import EqualTo

    from deeploc.stages import evaluate, infer, publish

    lake, bucket, _, _, _ = trained
    copy = tmp_path_factory.mktemp("site-lake") / "lake"
    for folder in ("models", "partitionings"):  # folder outputs: their pointers name versions, not paths
        shutil.copytree(lake / folder, copy / folder)
    infer.run(str(copy), bucket, "t1", crops=5)  # five crops: test_training checks them photo by photo
    pred = table(copy, "predictions")
    pred.loc[pred.index[0], "title"] = HOSTILE  # untrusted text, as Flickr titles can be
    put_table(copy, "predictions", pred, ("run",), replace=EqualTo("run", "t1"))
    evaluate.run(str(copy), "t1")
    publish.run(str(copy), bucket, "t1", seed=3)
    return copy, pred


@pytest.fixture(scope="module")
def moto_lake_bucket():
    """A moto S3 server with an empty bucket ``lake``, this process's AWS settings pointed at it; its URL."""
    import boto3

    import moto_s3

    server, url = moto_s3.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2",
           "AWS_ENDPOINT_URL": url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    yield url
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    server.stop()


@pytest.fixture
def shared_sample() -> Path:
    if not SHARED_SAMPLE.exists():
        pytest.skip(f"real YFCC100M rows not available ({SHARED_SAMPLE} is absent outside the project workspace)")
    return SHARED_SAMPLE


# The demo run's upload years: those the tests over its state touch (the UI's backfill 2007-2010, the
# deployment's 2009-2011, the rerun's 2010). Each yearly run costs the demo four Spark stages: 16 to 24 s in
# the suite on a slow 2-core machine, where eleven years' demo took 369 s and these five 296 s.
DEMO_YEARS = (2007, 2011)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The README's main command on a fresh state folder (a smaller demo set, in ``DEMO_YEARS``): (home,
    environment, result). The end-to-end tests check it; the Airflow UI test runs its UI over the same state."""
    home = tmp_path_factory.mktemp("deeploc-home")
    env = {**os.environ, "DEEPLOC_HOME": str(home), "DEEPLOC_DEMO_ROWS": "1500", "DEEPLOC_DEMO_SEED": "5",
           "DEEPLOC_DEMO_YEARS": "{}-{}".format(*DEMO_YEARS), "DEEPLOC_MODEL_CONF": json.dumps({"run": "e2e", "epochs": 2})}
    for var in ("DEEPLOC_LAKE", "DEEPLOC_BUCKET", "DEEPLOC_METADATA", "AIRFLOW_HOME", "DEEPLOC_LOGS"):
        env.pop(var, None)
    res = subprocess.run([str(REPO / "dev"), "demo"], env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return home, env, res


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium (``CHROMIUM``), driven by Playwright (per module: Playwright's sync API keeps an event
    loop running while it is open, which asyncio.run in later modules must not meet)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium-headless-shell package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


# Fixtures that run whole stages (Spark jobs, training, the demo through Airflow): a test that needs one
# is an integration test, outside the quick subset (-m "not slow and not e2e") whatever its own size.
INTEGRATION_FIXTURES = {"ingested", "trained", "site", "demo_run"}


# ``./dev test`` runs on two xdist workers (pyproject's addopts). A test file that uses a whole-stage
# fixture goes with every other file that uses it, as one unit of work for one worker, so that the fixture
# is built once; any other file is a unit of its own (its module-scoped servers start once). Units are
# handed out in the order of the items, the longest first, so that the last one to start is short: the
# units of more than a few seconds (as measured in fresh-clone runs: demo ~410 s, test_commit ~125,
# stages ~240, test_aws_target ~65, then 20 s and less) are named here, the rest follow in file order.
SHARED_GROUPS = {"demo_run": "demo", "ingested": "stages", "trained": "stages", "site": "stages"}
LONGEST_FIRST = ("demo", "test_commit", "stages", "test_aws_target", "test_parse_metadata", "test_aws_triggers",
                 "test_line_source", "test_cli_and_site", "test_compare", "test_efficientnet_lite")


@functools.cache
def group_of_file(path: Path) -> str:
    """The unit of work of a test file: the group of the shared fixtures its functions take, or the file."""
    names = {a.arg for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)
             for a in node.args.args}
    groups = {SHARED_GROUPS[n] for n in names & set(SHARED_GROUPS)}
    assert len(groups) <= 1, f"{path.name} uses fixtures of two groups: {groups}"
    return groups.pop() if groups else path.stem


def pytest_configure(config):
    """The Spark class archive, found or started by the first process (xdist's workers inherit its environment)."""
    if hasattr(config, "workerinput") or not OWN_SPARK_ARGS or getattr(config, "cache", None) is None:
        return  # (no cache: -p no:cacheprovider)
    import spark_classes

    found = spark_classes.archive(config.cache.mkdir("spark-classes"), JVM_FLAGS)
    if found:  # a JVM that cannot use it (not there yet, another classpath) would say so at every start: it is quiet
        os.environ["PYSPARK_SUBMIT_ARGS"] = (f"--driver-java-options '{JVM_FLAGS} -XX:SharedArchiveFile={found} "
                                             "-Xlog:cds=off,cds+dynamic=off' pyspark-shell")


def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling, with ``group_of_file`` as the scope (its own ``loadgroup`` marks do not
    reach the scheduler under pytest 9, whose node ids no longer carry them)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of_file(config.rootpath / nodeid.split("::")[0])

    return ByGroup(config, log)


def pytest_collection_modifyitems(items):
    for item in items:
        if INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        used = {SHARED_GROUPS[f] for f in item.fixturenames if f in SHARED_GROUPS}
        assert used <= {group_of_file(item.path)}, f"{item.nodeid} takes a fixture of {used} through one " \
                                                   "defined elsewhere: name it in its file's functions"
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of_file(item.path), len(rank)))  # stable: a unit's order stays
