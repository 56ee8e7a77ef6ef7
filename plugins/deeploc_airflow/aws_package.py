"""What the aws target ships and asks AWS for, built as plain data: the code package (a wheel of this
project), the pip constraints its nodes install it with, the scripts the nodes run, the EMR cluster
(``run_job_flow`` arguments), an EMR step, and the training instance's user data.

The operators that submit these are in ``aws_operators.py``; nothing here calls AWS.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from deeploc import registry

from deeploc_airflow.settings import REPO

SCRIPTS = Path(__file__).parent / "scripts"
# The project's source (pyproject.toml + tasks/): the repository, or where the Docker image keeps it.
SOURCE = Path(os.environ.get("DEEPLOC_SOURCE") or REPO)
LOCK = Path(os.environ.get("DEEPLOC_REQUIREMENTS") or SOURCE / "requirements.txt")
# Wheels carry file times; a fixed one makes the same code give the same bytes (and the same S3 key).
SOURCE_DATE_EPOCH = "315532800"
LABEL_TAG = "for-use-with-amazon-emr-managed-policies"   # what AmazonEMRServicePolicy_v2 requires


def code_package(source: Path = SOURCE) -> tuple[str, bytes]:
    """(file name, bytes) of this project's wheel, built from its pyproject.toml without network access."""
    with tempfile.TemporaryDirectory(prefix="deeploc-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(source / "tasks", src / "tasks", ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                    "*.egg-info"))
        shutil.copy(source / "pyproject.toml", src / "pyproject.toml")
        from deeploc import assets  # the map libraries and outlines travel inside the package

        for rel in assets.FILES:
            (src / "tasks" / "deeploc" / "web_assets" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(assets.path(rel), src / "tasks" / "deeploc" / "web_assets" / rel)
        out = Path(tmp) / "dist"
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", "--quiet", "--wheel-dir", str(out), str(src)],
                             capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        if res.returncode != 0:
            raise RuntimeError(f"building the deeploc wheel failed:\n{res.stderr[-3000:]}")
        (wheel,) = out.glob("deeploc-*.whl")
        return wheel.name, wheel.read_bytes()


def constraints(lock: Path = LOCK) -> str:
    """pip constraints for the nodes: the project's lock, plus the lock's TensorFlow version for the
    CUDA build (``tensorflow``, which the ``gpu`` extra asks for) beside the CPU build's pin."""
    text = lock.read_text()
    pin = re.search(r"^tensorflow[-_]cpu==(\S+)$", text, re.M | re.I)  # pip writes either spelling
    if not pin:
        raise RuntimeError(f"{lock} pins no tensorflow-cpu; relock requirements.in")
    return text.rstrip("\n") + f"\ntensorflow=={pin.group(1)}\n"


def files() -> dict[str, bytes]:
    """Everything a run uploads, by file name (content-addressed together by ``digest``)."""
    wheel_name, wheel = code_package()
    return {wheel_name: wheel, "constraints.txt": constraints().encode(),
            "node_setup.sh": (SCRIPTS / "node_setup.sh").read_bytes(),
            "step_main.py": (SCRIPTS / "step_main.py").read_bytes()}


def digest(blobs: dict[str, bytes]) -> str:
    return hashlib.sha256(b"".join(name.encode() + hashlib.sha256(data).digest()
                                   for name, data in sorted(blobs.items()))).hexdigest()[:16]


def uses_gpu(stages: Sequence[str]) -> bool:
    return any(registry.get(s).gpu_workers for s in stages)


def job_flow(name: str, stages: Sequence[str], cfg: dict, plan: dict, label: str) -> dict:
    """``run_job_flow`` arguments for one transient cluster of ``stages``: core nodes only when a stage
    spreads over them (GPU ones for inference), a primary node alone when every stage stays there."""
    gpu = uses_gpu(stages)
    setup = {"Name": "deeploc node setup", "ScriptBootstrapAction": {
        "Path": plan["node_setup"], "Args": [plan["constraints"], plan["wheel"], cfg["python"], "gpu" if gpu else "cpu"]}}
    bootstraps = [setup] + ([{"Name": "site bootstrap", "ScriptBootstrapAction": {"Path": cfg["bootstrap"], "Args": []}}]
                            if cfg["bootstrap"] else [])
    groups = [{"Name": "primary", "Market": "ON_DEMAND", "InstanceRole": "MASTER",
               "InstanceType": cfg["master_type"], "InstanceCount": 1}]
    if any(registry.get(s).runs_on == "cluster" for s in stages):
        groups.append({"Name": "core", "Market": "ON_DEMAND", "InstanceRole": "CORE",
                       "InstanceType": cfg["infer_core_type" if gpu else "core_type"],
                       "InstanceCount": int(cfg["infer_core_count" if gpu else "core_count"])})
    instances = {"InstanceGroups": groups,
                 "KeepJobFlowAliveWhenNoSteps": True,  # steps arrive one by one; the teardown task ends it
                 "TerminationProtected": False}
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
        "EbsRootVolumeSize": int(cfg["root_volume_gb"]),
        "Configurations": [
            {"Classification": "spark-env", "Configurations": [
                {"Classification": "export", "Properties": {"PYSPARK_PYTHON": python}}]},
            {"Classification": "spark-defaults", "Properties": {
                "spark.pyspark.python": python, "spark.sql.sources.partitionOverwriteMode": "static",
                **(_one_task_per_gpu(cfg) if gpu else {})}},
        ],
        "JobFlowRole": cfg["job_flow_role"],
        "ServiceRole": cfg["service_role"],
        "AutoTerminationPolicy": {"IdleTimeout": int(cfg["idle_minutes"]) * 60},
        "Tags": [{"Key": LABEL_TAG, "Value": "true"}, {"Key": "deeploc:cluster", "Value": name},
                 {"Key": "deeploc:run", "Value": label[:256]}],
    }


def _one_task_per_gpu(cfg: dict) -> dict:
    """One executor per GPU node, running one task at a time with all the node's cores (its threads
    read and decode images while the model runs): a model per Python worker, one worker per GPU. The
    executor's memory is sized so that YARN cannot place a second one on the node."""
    return {"spark.dynamicAllocation.enabled": "false",
            "spark.executor.instances": str(int(cfg["infer_core_count"])),
            "spark.executor.cores": str(int(cfg["infer_executor_cores"])),
            "spark.task.cpus": str(int(cfg["infer_executor_cores"])),
            "spark.executor.memory": cfg["infer_executor_memory"]}


def emr_step(argv: list[str], plan: dict, result: str) -> dict:
    """One ``spark-submit`` of the stage's argument list; its result goes to ``result`` (``deeploc.step``)."""
    return {"Name": f"deeploc {argv[0]}", "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar",
                              "Args": ["spark-submit", "--deploy-mode", "client", plan["step_main"], result, *argv]}}


def training_user_data(plan: dict, argv: list[str], result: str, log_uri: str, hours: float) -> str:
    """The training instance's boot script: its settings, then ``scripts/train_instance.sh``."""
    q = shlex.quote
    settings = {"SETUP": plan["node_setup"], "CONSTRAINTS": plan["constraints"], "WHEEL": plan["wheel"],
                "PY": plan["python"], "RESULT": result, "LOG_URI": log_uri, "HOURS": str(int(-(-float(hours) // 1)))}
    lines = ["#!/bin/bash", "# DeepLocations training run, started by Airflow; the instance terminates when it ends.",
             *(f"{k}={q(v)}" for k, v in settings.items()), f"ARGS=({' '.join(map(q, argv))})"]
    return "\n".join(lines) + "\n" + (SCRIPTS / "train_instance.sh").read_text()
