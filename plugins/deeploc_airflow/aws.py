"""The aws target: Spark stages as EMR steps on a transient cluster, training on a GPU EC2 instance.

Every stage runs the same ``deeploc <stage> ...`` argument list as on the local target
(``stage.stage_argv``): an EMR step wraps it in ``spark-submit`` with this run's code bundle, and the
training instance's user data runs it, then writes ``_SUCCESS`` or ``_FAILED`` (with the log) under
``<lake>/_markers/train/<run>/``. Clusters and instances are removed by teardown tasks whatever happened;
as a second net, clusters end themselves after an idle hour and the instance powers off (and so
terminates) when its command ends.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import zipfile
from pathlib import Path
from typing import Sequence

import deeploc
from airflow.providers.amazon.aws.operators.ec2 import EC2CreateInstanceOperator
from airflow.providers.amazon.aws.operators.emr import (EmrAddStepsOperator, EmrCreateJobFlowOperator,
                                                        EmrTerminateJobFlowOperator)
from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from deeploc_airflow.settings import REPO
from deeploc_airflow.stage import NEEDS, safe_run_name, stage_argv

# The package as installed (the Docker image) or on PYTHONPATH (the repository); and the lock,
# which the Docker image keeps outside the repository.
PACKAGE = Path(deeploc.__file__).parent
LOCK = Path(os.environ.get("DEEPLOC_REQUIREMENTS") or REPO / "requirements.txt")
# What the stages import on a worker; the versions come from the repository's lock (requirements.txt).
WORKER_PACKAGES = ("numpy", "pandas", "pyarrow", "pillow", "opencv-python-headless", "boto3", "botocore",
                   "tensorflow-cpu", "keras", "h5py", "reverse-geocode")
STEP_DRIVER = "import sys\nfrom deeploc.cli import main\nsys.exit(main(sys.argv[1:]))\n"
LOG_TAIL_LINES = 40


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    m = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not m:
        raise ValueError(f"not an s3:// location: {uri!r}")
    return m.group(1), m.group(2).rstrip("/")


def worker_requirements(lock: Path = LOCK) -> str:
    """Pinned requirement lines for the packages workers need, taken from the lock."""
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    pins = {norm(line.split("==")[0]): line.strip() for line in lock.read_text().splitlines() if "==" in line}
    missing = [p for p in WORKER_PACKAGES if p not in pins]
    if missing:
        raise RuntimeError(f"{lock} pins none of {missing}; add them to requirements.in and relock")
    return "".join(pins[p] + "\n" for p in WORKER_PACKAGES)


def code_bundle() -> bytes:
    """The ``deeploc`` package as a zip (Spark's ``--py-files``, the training instance's PYTHONPATH).
    Entries are sorted and timestamps fixed, so the same code gives the same bytes and the same key."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                info = zipfile.ZipInfo(str(path.relative_to(PACKAGE.parent)), date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    return buf.getvalue()


BOOTSTRAP = """#!/bin/bash
# DeepLocations worker setup: the Python the stages run on and their pinned libraries.
# Args: <requirements s3 uri> <python>. Runs on every EMR node and on the training instance.
set -euxo pipefail
REQ=$1; PY=$2
command -v "$PY" || sudo dnf install -y "$PY" "$PY-pip" || sudo apt-get install -y "$PY" "$PY-venv" python3-pip
aws s3 cp "$REQ" /tmp/deeploc-requirements.txt
if command -v nvidia-smi && nvidia-smi; then  # GPU node: the CUDA build of the same TensorFlow
  sed -i 's/^tensorflow-cpu==/tensorflow[and-cuda]==/' /tmp/deeploc-requirements.txt
fi
sudo "$PY" -m pip install --no-cache-dir -r /tmp/deeploc-requirements.txt
"""


def training_user_data(plan: dict, argv: list[str], marker: str) -> str:
    """The instance's boot script: set up, train, leave the log and a marker, power off."""
    py = shlex.quote(plan["python"])
    return f"""#!/bin/bash
# DeepLocations training run, started by Airflow; the instance terminates when this ends.
MARK={shlex.quote(marker)}
LOG=/var/log/deeploc-train.log
(
  set -euxo pipefail
  aws s3 cp {shlex.quote(plan['bootstrap'])} /tmp/deeploc-bootstrap.sh
  bash /tmp/deeploc-bootstrap.sh {shlex.quote(plan['requirements'])} {py}
  aws s3 cp {shlex.quote(plan['code'])} /opt/deeploc-code.zip
  PYTHONPATH=/opt/deeploc-code.zip {py} -c {shlex.quote(STEP_DRIVER)} {' '.join(map(shlex.quote, argv))}
) > "$LOG" 2>&1
RC=$?
aws s3 cp "$LOG" "$MARK/train.log"
if [ "$RC" -eq 0 ]; then echo ok | aws s3 cp - "$MARK/_SUCCESS"; else echo "$RC" | aws s3 cp - "$MARK/_FAILED"; fi
shutdown -h now
"""


def job_flow(name: str, stages: Sequence[str], cfg: dict, plan: dict, label: str) -> dict:
    """``run_job_flow`` arguments for one transient cluster."""
    gpu = "infer" in stages
    bootstraps = [{"Name": "deeploc workers", "ScriptBootstrapAction": {
        "Path": plan["bootstrap"], "Args": [plan["requirements"], cfg["python"]]}}]
    if cfg["bootstrap"]:
        bootstraps.append({"Name": "site bootstrap", "ScriptBootstrapAction": {"Path": cfg["bootstrap"], "Args": []}})
    instances = {
        "InstanceGroups": [
            {"Name": "primary", "Market": "ON_DEMAND", "InstanceRole": "MASTER",
             "InstanceType": cfg["master_type"], "InstanceCount": 1},
            {"Name": "core", "Market": "ON_DEMAND", "InstanceRole": "CORE",
             "InstanceType": cfg["infer_core_type" if gpu else "core_type"],
             "InstanceCount": int(cfg["infer_core_count" if gpu else "core_count"])},
        ],
        "KeepJobFlowAliveWhenNoSteps": True,  # steps arrive one by one; the teardown task ends it
        "TerminationProtected": False,
    }
    if cfg["subnet"]:
        instances["Ec2SubnetId"] = cfg["subnet"]
    python = f"/usr/bin/{cfg['python']}"
    return {
        "Name": f"deeploc-{name}-{label}"[:256],
        "ReleaseLabel": cfg["release_label"],
        "Applications": [{"Name": "Spark"}],
        "LogUri": cfg["log_uri"] or f"{plan['lake']}/_logs/emr",
        "Instances": instances,
        "BootstrapActions": bootstraps,
        "Configurations": [
            {"Classification": "spark-env", "Configurations": [
                {"Classification": "export", "Properties": {"PYSPARK_PYTHON": python}}]},
            {"Classification": "spark-defaults", "Properties": {
                "spark.pyspark.python": python, "spark.sql.sources.partitionOverwriteMode": "static"}},
        ],
        "JobFlowRole": cfg["job_flow_role"],
        "ServiceRole": cfg["service_role"],
        "AutoTerminationPolicy": {"IdleTimeout": 3600},
        "Tags": [{"Key": "deeploc:cluster", "Value": name}, {"Key": "deeploc:run", "Value": label[:256]}],
    }


def emr_step(argv: list[str], plan: dict) -> dict:
    """One ``spark-submit`` of the stage's argument list with this run's code bundle."""
    return {"Name": f"deeploc {argv[0]}", "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar",
                              "Args": ["spark-submit", "--deploy-mode", "client", "--py-files", plan["code"],
                                       plan["driver"], *argv]}}


def prepare(stages: list[str], clusters: dict[str, list[str]], run: str, params: dict | None = None,
            dag=None) -> dict:
    """Resolve the aws settings, check the locations, upload the code bundle, and return the plan
    every later aws task reads (pushed as separate XComs: ``plan["code"]`` etc.)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from deeploc_airflow.settings import resolve, resolve_aws

    cfg = resolve_aws(params)
    lake = resolve("lake", params).rstrip("/")
    for name in sorted({n for stage in stages for n in NEEDS[stage]}):
        if not resolve(name, params).startswith("s3://"):
            raise ValueError(f"the aws target needs an s3:// {name}: set the param, the Variable deeploc_{name} "
                             f"or the env DEEPLOC_{name.upper()} (got {resolve(name, params)!r})")
    files = {"deeploc.zip": code_bundle(), "requirements-worker.txt": worker_requirements().encode(),
             "bootstrap.sh": BOOTSTRAP.encode(), "deeploc_step.py": STEP_DRIVER.encode()}
    digest = hashlib.sha256(b"".join(hashlib.sha256(v).digest() for v in files.values())).hexdigest()[:16]
    bucket, prefix = split_s3((cfg["code_prefix"] or f"{lake}/_code").rstrip("/") + f"/{digest}")
    s3 = S3Hook()
    for fname, data in files.items():
        s3.load_bytes(data, f"{prefix}/{fname}", bucket, replace=True)
    uri = lambda fname: f"s3://{bucket}/{prefix}/{fname}"  # noqa: E731
    plan = {"lake": lake, "code": uri("deeploc.zip"), "requirements": uri("requirements-worker.txt"),
            "bootstrap": uri("bootstrap.sh"), "driver": uri("deeploc_step.py"), "python": cfg["python"],
            "cluster_id": cfg["cluster_id"], "settings": cfg,
            "marker": f"{lake}/_markers/train/{safe_run_name(run)}"}
    label = safe_run_name(f"{dag.dag_id if dag else 'deeploc'}-{run}")
    for name, stages in clusters.items():
        plan[f"job_flow_{name}"] = job_flow(name, stages, cfg, plan, label)
    return plan


class TransientCluster(EmrCreateJobFlowOperator):
    """Create the run's cluster, or hand on ``given_cluster`` (an existing one) untouched."""

    template_fields: Sequence[str] = (*EmrCreateJobFlowOperator.template_fields, "given_cluster")

    def __init__(self, *, given_cluster: str, **kwargs):
        super().__init__(emr_conn_id=None, wait_for_completion=False, **kwargs)
        self.given_cluster = given_cluster

    def execute(self, context):
        if self.given_cluster:
            self.log.info("using the given cluster %s; it will not be terminated", self.given_cluster)
            return self.given_cluster
        return super().execute(context)


class TerminateTransientCluster(EmrTerminateJobFlowOperator):
    """Teardown: terminate the cluster this run created; a given cluster is left running."""

    template_fields: Sequence[str] = (*EmrTerminateJobFlowOperator.template_fields, "given_cluster")

    def __init__(self, *, given_cluster: str, **kwargs):
        super().__init__(**kwargs)
        self.given_cluster = given_cluster

    def execute(self, context):
        if self.given_cluster:
            raise AirflowSkipException(f"cluster {self.given_cluster} was given, not created: left running")
        return super().execute(context)


class StageStep(EmrAddStepsOperator):
    """Add ``deeploc <stage> ...`` as one step; returns the step ids for ``EmrStepSensor``."""

    template_fields: Sequence[str] = (*EmrAddStepsOperator.template_fields, "options", "plan")
    ui_color = "#fbe8a6"

    def __init__(self, *, stage: str, options: dict, plan: dict, **kwargs):
        super().__init__(**kwargs)
        self.stage, self.options, self.plan = stage, dict(options), plan

    def execute(self, context):
        argv = stage_argv(self.stage, self.options, context.get("params") or {})
        self.steps = [emr_step(argv, self.plan)]
        self.log.info("step: %s", " ".join(self.steps[0]["HadoopJarStep"]["Args"]))
        return super().execute(context)


class _TimeoutFromSettings:
    """A sensor whose timeout (hours) is a templated value read when it runs, not fixed at parse time."""

    def execute(self, context):
        self.timeout = float(self.timeout_hours) * 3600
        return super().execute(context)


class StageStepSensor(_TimeoutFromSettings, EmrStepSensor):
    template_fields: Sequence[str] = (*EmrStepSensor.template_fields, "timeout_hours")

    def __init__(self, *, timeout_hours, **kwargs):
        super().__init__(**kwargs)
        self.timeout_hours = timeout_hours


class TrainingInstance(EC2CreateInstanceOperator):
    """Launch the GPU instance whose user data runs ``deeploc train ...``; returns its instance ids."""

    template_fields: Sequence[str] = (*EC2CreateInstanceOperator.template_fields, "options", "plan")
    ui_color = "#fbe8a6"
    stage = "train"

    def __init__(self, *, options: dict, plan: dict, **kwargs):
        super().__init__(image_id="", wait_for_completion=True, **kwargs)
        self.options, self.plan = dict(options), plan

    def execute(self, context):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        cfg = self.plan["settings"]
        if not cfg["train_ami"]:
            raise AirflowException("the aws target needs train_ami (a GPU AMI): set the param or Variable deeploc_aws")
        argv = stage_argv(self.stage, self.options, context.get("params") or {})
        bucket, prefix = split_s3(self.plan["marker"])
        s3 = S3Hook()
        stale = s3.list_keys(bucket, prefix=prefix + "/")
        if stale:  # markers of an earlier try of this run must not decide this one
            s3.delete_objects(bucket, stale)
        self.image_id = cfg["train_ami"]
        self.config = {
            "InstanceType": cfg["train_instance_type"],
            "IamInstanceProfile": {"Name": cfg["train_instance_profile"]},
            "UserData": training_user_data(self.plan, argv, self.plan["marker"]),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": f"deeploc-train-{argv[argv.index('--run') + 1]}"[:255]}]}],
            **({"SubnetId": cfg["train_subnet"] or cfg["subnet"]} if cfg["train_subnet"] or cfg["subnet"] else {}),
        }
        self.log.info("training: deeploc %s", " ".join(argv))
        return super().execute(context)


class TrainingMarkerSensor(_TimeoutFromSettings, S3KeySensor):
    """Wait for ``_SUCCESS`` under the run's marker prefix; ``_FAILED`` fails at once with the log's tail."""

    template_fields: Sequence[str] = (*S3KeySensor.template_fields, "timeout_hours")

    def __init__(self, *, marker: str, timeout_hours, **kwargs):
        super().__init__(bucket_key=marker.rstrip("/") + "/_*", wildcard_match=True, check_fn=self._decide,
                         **kwargs)
        self.timeout_hours = timeout_hours

    # Airflow runs a copy of the task with its templates rendered: bind the check to that copy.
    def execute(self, context):
        self.check_fn = self._decide
        return super().execute(context)

    def execute_complete(self, context, event):
        self.check_fn = self._decide
        return super().execute_complete(context, event)

    def _decide(self, files: list[dict], **_context) -> bool:
        names = {f["Key"].rsplit("/", 1)[-1]: f["Key"] for f in files}
        if "_FAILED" in names:
            bucket, _ = split_s3(self.bucket_key)
            log_key = names["_FAILED"].rsplit("/", 1)[0] + "/train.log"
            try:
                tail = "\n".join(self.hook.read_key(log_key, bucket).splitlines()[-LOG_TAIL_LINES:])
            except Exception as exc:  # the log itself may be what failed to upload
                tail = f"(no log at s3://{bucket}/{log_key}: {exc})"
            raise AirflowException(f"training failed; last lines of s3://{bucket}/{log_key}:\n{tail}")
        return "_SUCCESS" in names
