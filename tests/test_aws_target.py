"""The aws target against moto: both DAGs green; a step that fails once is submitted again and the run
goes green; a terminal failure fails at once; a lost training instance is replaced; teardowns always
run; the steps carry exactly the argument lists the local target runs (see aws_on_moto.py)."""

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

SCENARIO = REPO / "tests" / "aws_on_moto.py"


def _env(home) -> dict:
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'tasks'}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL": "",
            "DEEPLOC_LAKE": "", "DEEPLOC_BUCKET": "", "DEEPLOC_METADATA": "", "DEEPLOC_TARGET": "",
            "DEEPLOC_AWS": json.dumps({"poll_seconds": 1, "capacity_wait_hours": 0.05})}


# Scenarios whose faults touch different DAGs run together: each DAG's run shows its own fault.
GREEN = ("--busy-cluster", "--unlisted-instance")
RETRIED = ("--fail-once", "availability", "--lose-instance", "--stale-instance")
DEAD = ("--cluster-dies", "availability", "--fail-training")
FAILING = ("--fail-always", "faces", "--fail-terminal", "infer")
REFUSED = ("--no-wheelhouse", "--tiny-volume")
GIVEN = ("--cluster-id",)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The result of ``aws_on_moto.py`` with a set of flags above. One process runs them all in turn, in
    one Airflow home: a scenario costs ~6 s of one core, the process's imports and Airflow's start ~10 s
    more, paid once (six processes took twice the CPU; two at once, 12 % more than one). The tests that
    use them are marked slow (two DAG runs each)."""
    scenarios = (GREEN, RETRIED, DEAD, FAILING, REFUSED, GIVEN)
    home = tmp_path_factory.mktemp("scenarios")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=_env(home), check=True,
                   capture_output=True, timeout=300)
    outs = [home / f"result-{i}.json" for i in range(len(scenarios))]
    argv = [str(outs[0]), *scenarios[0]]
    for out, args in zip(outs[1:], scenarios[1:]):
        argv += ["--then", str(out), *args]
    res = subprocess.run([sys.executable, str(SCENARIO), *argv], env=_env(home), capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = {args: json.loads(out.read_text()) for out, args in zip(outs, scenarios)}
    return results.__getitem__


def _clusters(result) -> dict:
    return {c["name"].split("-")[1]: c for c in result["clusters"]}


def _stage_args(step):  # spark-submit --deploy-mode client <step_main.py> <result> <stage argv...>
    return step[5:]


@pytest.mark.slow
def test_both_dags_green_with_the_local_argument_lists(scenario):
    """Green, while another run's cluster holds the room at first and EC2 is slow to list the instance."""
    r = scenario(GREEN)
    for dag_id, run in r["runs"].items():
        assert run["state"] == "success", (dag_id, run["tasks"])
        for task_id, ti in run["tasks"].items():
            want = "success" if task_id.startswith("aws.") or task_id in ("target", "announce_faces") else "skipped"
            assert ti["state"] == want, (dag_id, task_id, ti)
    clusters = _clusters(r)
    assert set(clusters) == {"ingest", "prep", "shards", "serve"}
    assert all(c["state"] == "TERMINATED" for c in clusters.values())
    assert all(c["tags"]["for-use-with-amazon-emr-managed-policies"] == "true" for c in clusters.values())
    # the partitioning runs on the primary node: its cluster has no core nodes
    assert clusters["prep"]["groups"] == ["MASTER"] and sorted(clusters["serve"]["groups"]) == ["CORE", "MASTER"]
    assert sorted(clusters["shards"]["groups"]) == ["CORE", "MASTER"]
    # Each step is spark-submit of the step driver with the stage's local argument list, in order.
    local = {**r["runs"]["deeploc_ingestion"]["local_argv"], **r["runs"]["deeploc_model"]["local_argv"]}
    for name, stages in {"ingest": ["parse", "metadata", "availability", "faces"], "prep": ["partitioning"],
                         "shards": ["shards"], "serve": ["infer", "evaluate", "removal_effect", "publish"]}.items():
        steps = clusters[name]["steps"]
        assert [_stage_args(s) for s in steps] == [local[stage] for stage in stages], name
        assert all(s[:3] == ["spark-submit", "--deploy-mode", "client"] and s[3].endswith("/step_main.py")
                   and s[4].startswith("s3://deeploc-lake/lake/_markers/") for s in steps)
    assert local["metadata"][-4:] == ["--start", "2010-01-01", "--end", "2011-01-01"]
    # The training instance ran the local train arguments, and is gone.
    (inst,) = r["instances"]
    assert inst["state"] == "terminated" and inst["type"] == "g5.2xlarge"
    assert f"ARGS=({' '.join(map(shlex.quote, local['train']))})" in inst["user_data"]
    assert "HOURS=36" in inst["user_data"] and 'shutdown -h "+$((HOURS * 60 + 20))"' in inst["user_data"]
    names = sorted(k.rsplit("/", 1)[1] for k in r["code"])
    assert names[:3] == ["constraints.txt", "deeploc-0.1.0-py3-none-any.whl", "node_setup.sh"]
    assert names[3:] == ["step_main.py"]
    # The first cluster was asked for only once the other run's cluster had ended (quota 264 vCPUs, the
    # ingest cluster alone 264); the instance EC2 did not list at first was waited for, not given up.
    kinds = [e[0] for e in r["events"]]
    ingest = next(i for i, e in enumerate(r["events"]) if e[0] == "cluster" and e[1].startswith("deeploc-ingest"))
    assert kinds.index("busy_ended") < ingest
    assert "not_listed" in kinds and kinds.index("not_listed") > kinds.index("launch")
    # Each run kept its plan in the lake, every check passed, the nodes' wheelhouse among them.
    for run in r["runs"].values():
        assert run["plan"]["ok"] and {"wheelhouse", "quota_standard"} <= {c["name"] for c in run["plan"]["checks"]}
    assert r["runs"]["deeploc_model"]["plan"]["data"]["photos"] == 48


@pytest.mark.slow
def test_a_step_that_fails_once_is_submitted_again(scenario):
    r = scenario(RETRIED)
    ing = r["runs"]["deeploc_ingestion"]
    assert ing["state"] == "success" and ing["tasks"]["aws.availability"] == {"state": "success", "tries": 2}
    steps = [_stage_args(s)[0] for s in _clusters(r)["ingest"]["steps"]]
    assert steps == ["parse", "metadata", "availability", "availability", "faces"]  # resubmitted, not re-polled
    names = [n for n in _clusters(r)["ingest"]["step_names"] if n.startswith("deeploc availability ")]
    assert [n.rsplit(" ", 1)[1] for n in names] == ["try1", "try2"]  # each try finds its own step by name


@pytest.mark.slow
def test_a_dead_cluster_fails_the_step_at_once_with_emrs_reason(scenario):
    r = scenario(DEAD)
    ing = r["runs"]["deeploc_ingestion"]
    assert ing["state"] == "failed"
    assert ing["tasks"]["aws.availability"] == {"state": "failed", "tries": 1}  # retries=2 not spent on a dead cluster
    assert ing["tasks"]["aws.faces"]["state"] == "upstream_failed"
    assert ing["tasks"]["aws.terminate_ingest_cluster"]["state"] == "success"
    assert [_stage_args(s)[0] for s in _clusters(r)["ingest"]["steps"]] == ["parse", "metadata", "availability"]
    assert _clusters(r)["ingest"]["reason"] == "The primary node was lost"


@pytest.mark.slow
def test_a_plan_that_does_not_fit_stops_the_run_before_anything_starts(scenario):
    r = scenario(REFUSED)
    for dag_id, run in r["runs"].items():
        assert run["state"] == "failed" and run["tasks"]["aws.plan"] == {"state": "failed", "tries": 1}, dag_id
        failed = {c["name"] for c in run["plan"]["checks"] if not c["ok"]}
        assert failed == ({"wheelhouse", "disk"} if dag_id == "deeploc_model" else {"wheelhouse"}), dag_id
    disk = next(c for c in r["runs"]["deeploc_model"]["plan"]["checks"] if c["name"] == "disk")
    assert "on a 1 GB volume" in disk["message"] and "train_volume_gb" in disk["message"]
    assert r["clusters"] == [] and r["instances"] == [] and r["events"] == []


@pytest.mark.slow
def test_a_terminal_failure_fails_at_once_and_the_cluster_still_goes(scenario):
    r = scenario(FAILING)
    model = r["runs"]["deeploc_model"]
    assert model["state"] == "failed"
    assert model["tasks"]["aws.infer"] == {"state": "failed", "tries": 1}  # no retry burnt
    assert model["tasks"]["aws.evaluate"]["state"] == "upstream_failed"
    assert model["tasks"]["aws.terminate_serve_cluster"]["state"] == "success"
    assert _clusters(r)["serve"]["state"] == "TERMINATED"


@pytest.mark.slow
def test_a_step_that_keeps_failing_uses_its_retries(scenario):
    r = scenario(FAILING)
    ing = r["runs"]["deeploc_ingestion"]
    assert ing["state"] == "failed" and ing["tasks"]["aws.faces"] == {"state": "failed", "tries": 3}  # retries=2
    assert ing["tasks"]["announce_faces"]["state"] == "upstream_failed"
    assert ing["tasks"]["aws.terminate_ingest_cluster"]["state"] == "success"
    assert [_stage_args(s)[0] for s in _clusters(r)["ingest"]["steps"]].count("faces") == 3


@pytest.mark.slow
def test_a_lost_training_instance_is_replaced(scenario):
    """The first try's instance is reclaimed and its worker died with a second one of the run running:
    the next try terminates that one before it launches its own."""
    r = scenario(RETRIED)
    model = r["runs"]["deeploc_model"]
    assert model["state"] == "success" and model["tasks"]["aws.train"] == {"state": "success", "tries": 2}
    assert [i["state"] for i in r["instances"]] == ["terminated", "terminated"]
    (ghost,) = [e[1] for e in r["events"] if e[0] == "ghost"]
    launches = [i for i, e in enumerate(r["events"]) if e[0] == "launch"]
    ended = next(i for i, e in enumerate(r["events"]) if e[0] == "terminate" and ghost in e[1])
    assert launches[0] < ended < launches[1]
    results = [next(line for line in i["user_data"].splitlines() if line.startswith("RESULT=")) for i in r["instances"]]
    assert results[0].endswith("train-try1.json") and results[1].endswith("train-try2.json")


@pytest.mark.slow
def test_a_failed_training_fails_at_once_and_the_instance_still_goes(scenario):
    r = scenario(DEAD)
    tasks = r["runs"]["deeploc_model"]["tasks"]
    assert r["runs"]["deeploc_model"]["state"] == "failed"
    assert tasks["aws.train"] == {"state": "failed", "tries": 1}
    assert tasks["aws.terminate_training_instances"]["state"] == "success"
    assert tasks["aws.create_serve_cluster"]["state"] == "upstream_failed"
    assert [i["state"] for i in r["instances"]] == ["terminated"]
    assert "serve" not in _clusters(r) and _clusters(r)["prep"]["state"] == "TERMINATED"


@pytest.mark.slow
def test_a_given_cluster_is_used_and_left_running(scenario):
    r = scenario(GIVEN)
    assert [c["id"] for c in r["clusters"]] == [r["given_cluster"]]
    (shared,) = r["clusters"]
    # parse, metadata, availability, faces; partitioning, shards, infer, evaluate, removal_effect, publish
    assert shared["state"] in ("RUNNING", "WAITING") and len(shared["steps"]) == 10
    for run in r["runs"].values():
        assert run["state"] == "success"
        assert all(run["tasks"][t]["state"] == "success" for t in run["tasks"] if t.startswith("aws.terminate_")
                   and t.endswith("_cluster"))  # and yet the cluster is still up (above)


# The pieces, without Airflow running.

def test_code_package_is_a_reproducible_wheel_of_the_project():
    from deeploc_airflow.aws_package import code_package

    name, blob = code_package(cache=False)
    assert name == "deeploc-0.1.0-py3-none-any.whl" and blob == code_package(cache=False)[1]  # reproducible
    assert code_package() == (name, blob) == code_package()  # built once, then the cached copy
    zf = zipfile.ZipFile(io.BytesIO(blob))
    names = zf.namelist()
    assert "deeploc/cli.py" in names and "deeploc/stages/infer.py" in names and "deeploc/step.py" in names
    assert any(n.startswith("deeploc/site_template/") for n in names) and not any("__pycache__" in n for n in names)
    assert "deeploc/web_assets/world-atlas/countries-50m.json" in names  # evaluate and publish need no npm on EMR
    assert not any(n.startswith("deeploc/demo/") or "moto" in n for n in names)  # demo-only and test-only code stay home
    meta = zf.read("deeploc-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: numpy" in meta and 'Requires-Dist: tensorflow[and-cuda]; extra == "gpu"' in meta
    assert 'Requires-Dist: pyspark; extra == "spark"' in meta  # EMR's own Spark is never replaced


def test_constraints_are_the_lock_plus_the_gpu_build():
    from deeploc_airflow.aws_package import constraints, LOCK

    text = constraints()
    assert text.startswith(LOCK.read_text().rstrip("\n"))
    cpu = next(line for line in text.splitlines() if line.lower().replace("_", "-").startswith("tensorflow-cpu=="))
    assert f"tensorflow=={cpu.split('==')[1]}" in text.splitlines()


def test_job_flow_sizes_clusters_by_their_stages():
    from deeploc_airflow.aws_package import job_flow
    from deeploc_airflow.settings import AWS_DEFAULTS

    plan = {"lake": "s3://l/lake", "node_setup": "s3://c/n.sh", "wheels": "s3://c/wheels/1", "wheel": "s3://c/w.whl"}
    cfg = {**AWS_DEFAULTS, "subnet": "subnet-1", "bootstrap": "s3://c/site.sh", "task_count": 6}
    serve, prep, ingest, shards = (job_flow(n, s, cfg, plan, "x") for n, s in (
        ("serve", ["infer", "evaluate"]), ("prep", ["partitioning"]), ("ingest", ["faces"]), ("shards", ["shards"])))
    groups = lambda jf: {g["InstanceRole"]: g for g in jf["Instances"]["InstanceGroups"]}  # noqa: E731
    assert groups(serve)["CORE"]["InstanceType"] == AWS_DEFAULTS["infer_core_type"]
    assert groups(ingest)["CORE"]["InstanceType"] == AWS_DEFAULTS["core_type"]
    assert set(groups(prep)) == {"MASTER"}
    # Task nodes (compute only, no HDFS) on CPU clusters, as spot instances; never on the GPU cluster.
    assert "TASK" not in groups(serve)
    task = groups(ingest)["TASK"]
    assert (task["Market"], task["InstanceCount"], groups(ingest)["CORE"]["Market"]) == ("SPOT", 6, "ON_DEMAND")
    # What each cluster's nodes install: TensorFlow's GPU build for GPU workers, else no TensorFlow (the
    # shards are written without it).
    extra = lambda jf: jf["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]  # noqa: E731
    assert extra(serve) == ["s3://c/wheels/1", "s3://c/w.whl", "python3.11", "gpu"]
    assert extra(shards)[-1] == "base" and extra(ingest)[-1] == "base" and extra(prep)[-1] == "base"
    props = serve["Configurations"][1]["Properties"]
    assert props["spark.task.cpus"] == props["spark.executor.cores"]  # one inference task per executor (GPU)
    assert prep["Instances"]["Ec2SubnetId"] == "subnet-1" and prep["LogUri"] == "s3://l/lake/_logs/emr"
    assert [b["ScriptBootstrapAction"]["Path"] for b in prep["BootstrapActions"]] == ["s3://c/n.sh", "s3://c/site.sh"]
    assert prep["AutoTerminationPolicy"]["IdleTimeout"] == 3600 and prep["EbsRootVolumeSize"] >= 32


def test_aws_settings_refuse_unknown_keys_and_waits_past_their_ceiling(monkeypatch):
    from deeploc_airflow.settings import resolve_aws

    monkeypatch.setenv("DEEPLOC_AWS", json.dumps({"core_count": 4, "core_typo": "x"}))
    with pytest.raises(ValueError, match="core_typo"):
        resolve_aws({})
    monkeypatch.setenv("DEEPLOC_AWS", json.dumps({"core_count": 4}))
    cfg = resolve_aws({"train_ami": "ami-1", "train_instance_type": ""})
    assert (cfg["core_count"], cfg["train_ami"], cfg["train_instance_type"]) == (4, "ami-1", "g5.2xlarge")
    with pytest.raises(ValueError, match="step_timeout_hours"):
        resolve_aws({"step_timeout_hours": 13})


@pytest.mark.parametrize("script", ["node_setup.sh", "train_instance.sh"])
def test_the_node_scripts_pass_shellcheck(script):
    path = REPO / "plugins" / "deeploc_airflow" / "scripts" / script
    res = subprocess.run([shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable), "shellcheck"),
                          "--shell=bash", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_the_training_user_data_is_valid_bash():
    from deeploc_airflow.aws_package import training_user_data

    plan = {"node_setup": "s3://c/n.sh", "wheels": "s3://c/wheels/abc", "wheel": "s3://c/w.whl", "python": "python3.11"}
    script = training_user_data(plan, ["train", "--run", "a b'c"], "s3://l/r.json", "s3://l/r.log", 2.5)
    assert "HOURS=3" in script and "ARGS=(train --run 'a b'\"'\"'c')" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
