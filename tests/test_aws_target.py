"""The aws target against moto: both DAGs green, failures retried then failed with teardown still run,
and the steps carry exactly the argument lists the local target runs (see aws_on_moto.py)."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
import io

import pytest
from conftest import REPO

SCENARIO = REPO / "tests" / "aws_on_moto.py"


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """One migrated Airflow database; each scenario runs on its own copy."""
    home = tmp_path_factory.mktemp("airflow-template")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=_env(home), check=True,
                   capture_output=True, timeout=300)
    return home / "airflow.db"


def _env(home) -> dict:
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'tasks'}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL": "",
            "DEEPLOC_LAKE": "", "DEEPLOC_BUCKET": "", "DEEPLOC_METADATA": "", "DEEPLOC_TARGET": ""}


def scenario(tmp_path, db, *args) -> dict:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(db, home / "airflow.db")
    out = tmp_path / "result.json"
    res = subprocess.run([sys.executable, str(SCENARIO), str(out), *args], env=_env(home), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads(out.read_text())


def _clusters(result) -> dict:
    return {c["name"].split("-")[1]: c for c in result["clusters"]}


def test_both_dags_green_with_the_local_argument_lists(tmp_path, migrated_db):
    r = scenario(tmp_path, migrated_db)
    for dag_id, run in r["runs"].items():
        assert run["state"] == "success", (dag_id, run["tasks"])
        for task_id, ti in run["tasks"].items():
            assert ti["state"] == ("success" if task_id.startswith("aws.") or task_id == "target" else "skipped"), \
                (dag_id, task_id, ti)
    clusters = _clusters(r)
    assert set(clusters) == {"ingest", "prep", "serve"}
    assert all(c["state"] == "TERMINATED" for c in clusters.values())
    # Each step is spark-submit of the code bundle with the stage's local argument list, in order.
    local = {**r["runs"]["deeploc_ingestion"]["local_argv"], **r["runs"]["deeploc_model"]["local_argv"]}
    for name, stages in {"ingest": ["metadata", "availability", "faces"], "prep": ["partition"],
                         "serve": ["infer", "evaluate", "publish"]}.items():
        steps = clusters[name]["steps"]
        assert [s[6:] for s in steps] == [local[stage] for stage in stages], name
        assert all(s[:5] == ["spark-submit", "--deploy-mode", "client", "--py-files", s[4]] for s in steps)
        assert all(s[4].endswith("/deeploc.zip") and s[5].endswith("/deeploc_step.py") for s in steps)
    assert local["metadata"][-4:] == ["--start", "2010-01-01", "--end", "2011-01-01"]
    # The training instance ran the local train arguments, and is gone.
    (inst,) = r["instances"]
    assert inst["state"] == "terminated" and inst["type"] == "g5.2xlarge"
    assert " ".join(map(shlex.quote, local["train"])) in inst["user_data"]
    assert "MARK=s3://deeploc-lake/lake/_markers/train/m1" in inst["user_data"]
    assert sorted(k.rsplit("/", 1)[1] for k in r["code"]) == \
        ["bootstrap.sh", "deeploc.zip", "deeploc_step.py", "requirements-worker.txt"]


def test_failed_step_retries_then_fails_and_the_cluster_still_goes(tmp_path, migrated_db):
    r = scenario(tmp_path, migrated_db, "--fail-stage", "infer")
    model = r["runs"]["deeploc_model"]
    assert model["state"] == "failed"
    tasks = model["tasks"]
    assert tasks["aws.wait_infer"] == {"state": "failed", "tries": 2}  # retries=1 in the model DAG
    assert tasks["aws.evaluate"]["state"] == "upstream_failed"
    assert tasks["aws.terminate_serve_cluster"]["state"] == "success"
    assert _clusters(r)["serve"]["state"] == "TERMINATED"
    assert [i["state"] for i in r["instances"]] == ["terminated"]


def test_failed_marker_fails_training_and_the_instance_still_goes(tmp_path, migrated_db):
    r = scenario(tmp_path, migrated_db, "--fail-training")
    tasks = r["runs"]["deeploc_model"]["tasks"]
    assert r["runs"]["deeploc_model"]["state"] == "failed"
    assert tasks["aws.wait_train"] == {"state": "failed", "tries": 2}
    assert tasks["aws.terminate_train_instance"]["state"] == "success"
    assert tasks["aws.create_serve_cluster"]["state"] == "upstream_failed"
    assert [i["state"] for i in r["instances"]] == ["terminated"]
    assert "serve" not in _clusters(r) and _clusters(r)["prep"]["state"] == "TERMINATED"


def test_a_given_cluster_is_used_and_left_running(tmp_path, migrated_db):
    r = scenario(tmp_path, migrated_db, "--cluster-id")
    assert [c["id"] for c in r["clusters"]] == [r["given_cluster"]]
    (shared,) = r["clusters"]
    assert shared["state"] in ("RUNNING", "WAITING") and len(shared["steps"]) == 7
    for run in r["runs"].values():
        assert run["state"] == "success"
        assert all(run["tasks"][t]["state"] == "skipped" for t in run["tasks"] if t.startswith("aws.terminate_")
                   and t.endswith("_cluster"))


# The pieces, without Airflow running.

def test_code_bundle_is_reproducible_and_complete():
    from deeploc_airflow.aws import code_bundle

    blob = code_bundle()
    assert blob == code_bundle()
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert "deeploc/cli.py" in names and "deeploc/stages/infer.py" in names
    assert any(n.startswith("deeploc/site_template/") for n in names)
    assert not any("__pycache__" in n for n in names)


def test_worker_requirements_are_pinned_from_the_lock(tmp_path):
    from deeploc_airflow.aws import WORKER_PACKAGES, worker_requirements

    lines = worker_requirements().splitlines()
    assert len(lines) == len(WORKER_PACKAGES) and all("==" in line for line in lines)
    assert any(line.startswith("tensorflow") for line in lines)
    lock = tmp_path / "requirements.txt"
    lock.write_text("numpy==2.0.0\n")
    with pytest.raises(RuntimeError, match="pins none of"):
        worker_requirements(lock)


def test_job_flow_puts_inference_on_gpu_workers():
    from deeploc_airflow.aws import job_flow
    from deeploc_airflow.settings import AWS_DEFAULTS

    plan = {"lake": "s3://l/lake", "bootstrap": "s3://c/b.sh", "requirements": "s3://c/r.txt"}
    cfg = {**AWS_DEFAULTS, "subnet": "subnet-1", "bootstrap": "s3://c/site.sh"}
    serve, prep = (job_flow(n, s, cfg, plan, "x") for n, s in (("serve", ["infer"]), ("prep", ["partition"])))
    core = lambda jf: jf["Instances"]["InstanceGroups"][1]  # noqa: E731
    assert core(serve)["InstanceType"] == AWS_DEFAULTS["infer_core_type"]
    assert core(prep)["InstanceType"] == AWS_DEFAULTS["core_type"]
    assert prep["Instances"]["Ec2SubnetId"] == "subnet-1" and prep["LogUri"] == "s3://l/lake/_logs/emr"
    assert [b["ScriptBootstrapAction"]["Path"] for b in prep["BootstrapActions"]] == ["s3://c/b.sh", "s3://c/site.sh"]
    assert prep["AutoTerminationPolicy"]["IdleTimeout"] > 0


def test_aws_settings_refuse_unknown_keys(monkeypatch):
    from deeploc_airflow.settings import resolve_aws

    monkeypatch.setenv("DEEPLOC_AWS", json.dumps({"core_count": 4, "core_typo": "x"}))
    with pytest.raises(ValueError, match="core_typo"):
        resolve_aws({})
    monkeypatch.setenv("DEEPLOC_AWS", json.dumps({"core_count": 4}))
    cfg = resolve_aws({"train_ami": "ami-1", "train_instance_type": ""})
    assert (cfg["core_count"], cfg["train_ami"], cfg["train_instance_type"]) == (4, "ami-1", "g5.2xlarge")
