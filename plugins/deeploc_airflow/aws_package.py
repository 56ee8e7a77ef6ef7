"""What the aws target ships and asks AWS for, built as plain data: the code package (a wheel of this
project), the pip constraints and the wheelhouse its nodes install it from, the scripts the nodes
run, the EMR cluster (``run_job_flow`` arguments), an EMR step, and the training instance's user data.

Nodes install with ``pip --no-index --find-links``: no node reaches PyPI. The wheelhouse (every
dependency as a wheel for the nodes' platform, one set per extra: ``base`` for ingestion nodes, which
need no TensorFlow, ``cpu`` and ``gpu``) depends on the lock alone, so it is built once per lock
(``./dev wheelhouse --lake s3://...``) and reused by every code change;
the plan refuses a run whose wheelhouse is missing. The operators that submit these are in
``aws_operators.py``; nothing here calls AWS but the wheelhouse command.
"""

from __future__ import annotations

import fnmatch
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
from deeploc.aws_config import EMR_POLICY_TAG

from deeploc_airflow.settings import REPO

SCRIPTS = Path(__file__).parent / "scripts"
# The project's source (pyproject.toml + tasks/): the repository, or where the Docker image keeps it.
SOURCE = Path(os.environ.get("DEEPLOC_SOURCE") or REPO)
LOCK = Path(os.environ.get("DEEPLOC_REQUIREMENTS") or SOURCE / "requirements.txt")
# Wheels carry file times; a fixed one makes the same code give the same bytes (and the same S3 key).
SOURCE_DATE_EPOCH = "315532800"
EXTRAS = ("base", "cpu", "gpu")
# The nodes: Amazon Linux 2023 on x86-64 (EMR 8, the Deep Learning AMI), CPython 3.11.
NODE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


# Clusters get what runs there: not the demo generator (deeploc/demo), nor build leftovers.
LEFT_OUT = ("__pycache__", "*.pyc", "*.egg-info", "demo")


def code_package(source: Path = SOURCE, cache: bool = True) -> tuple[str, bytes]:
    """(file name, bytes) of this project's wheel, built from its pyproject.toml without network access.
    The wheel is reproducible, so one built from the same sources is reused (a cache keyed by their
    content, in the temp folder): every run and every scenario of the tests uploads without rebuilding."""
    from deeploc.web import assets  # the map libraries and outlines travel inside the package

    sources = _package_sources(source, assets)
    key = hashlib.sha256(b"".join(rel.encode() + hashlib.sha256(path.read_bytes()).digest()
                                  for rel, path in sorted(sources.items()))).hexdigest()[:24]
    cached = Path(tempfile.gettempdir()) / "deeploc-wheels" / key
    if cache and cached.is_dir() and (found := sorted(cached.glob("deeploc-*.whl"))):
        return found[0].name, found[0].read_bytes()
    with tempfile.TemporaryDirectory(prefix="deeploc-wheel-") as tmp:
        src = Path(tmp) / "src"
        for rel, path in sources.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / rel)
        out = Path(tmp) / "dist"
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                              "--disable-pip-version-check", "--quiet", "--wheel-dir", str(out), str(src)],
                             capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        if res.returncode != 0:
            raise RuntimeError(f"building the deeploc wheel failed:\n{res.stderr[-3000:]}")
        (wheel,) = out.glob("deeploc-*.whl")
        if cache:  # a whole folder renamed into place: readers see all of it or none
            cached.parent.mkdir(parents=True, exist_ok=True)
            staged = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cached.parent))
            shutil.copy(wheel, staged / wheel.name)
            try:
                staged.rename(cached)
            except OSError:  # another process cached it first
                shutil.rmtree(staged, ignore_errors=True)
        return wheel.name, wheel.read_bytes()


def _package_sources(source: Path, assets) -> dict[str, Path]:
    """What the wheel is built from: relative path in the build folder -> file."""
    found = {"pyproject.toml": source / "pyproject.toml"}
    tasks = source / "tasks"
    for path in sorted(tasks.rglob("*")):
        rel = path.relative_to(tasks)
        if path.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in LEFT_OUT):
            found[f"tasks/{rel}"] = path
    for rel in assets.FILES:
        found[f"tasks/deeploc/web_assets/{rel}"] = assets.path(rel)
    return found


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


def node_extra(stages: Sequence[str]) -> str:
    """What a cluster's nodes install: TensorFlow's CUDA build for GPU workers, its CPU build where a
    stage needs TensorFlow, neither for ingestion."""
    if uses_gpu(stages):
        return "gpu"
    return "cpu" if any(registry.get(s).tensorflow for s in stages) else "base"


def wheelhouse_digest(lock_text: str) -> str:
    return hashlib.sha256(lock_text.encode()).hexdigest()[:16]


def wheelhouse_command(extra: str, constraints_file: str, dest: str, index_url: str | None = None) -> list[str]:
    """``pip download`` of the package's dependencies with ``extra`` as wheels for the nodes' platform."""
    return [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", *(a for p in NODE_PLATFORMS for a in ("--platform", p)),
            "--constraint", constraints_file, "--dest", dest, "--disable-pip-version-check", "--quiet",
            *(["--index-url", index_url] if index_url else []), *_dependencies(extra)]


def _dependencies(extra: str) -> list[str]:
    """The package's requirements for an extra, from pyproject.toml (the wheel's own metadata)."""
    import tomllib

    project = tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *(project["optional-dependencies"][extra] if extra != "base" else [])]


def job_flow(name: str, stages: Sequence[str], cfg: dict, plan: dict, label: str) -> dict:
    """``run_job_flow`` arguments for one transient cluster of ``stages``: core nodes only when a stage
    spreads over them (GPU ones for inference), a primary node alone when every stage stays there."""
    gpu = uses_gpu(stages)
    setup = {"Name": "deeploc node setup", "ScriptBootstrapAction": {
        "Path": plan["node_setup"], "Args": [plan["wheels"], plan["wheel"], cfg["python"], node_extra(stages)]}}
    bootstraps = [setup] + ([{"Name": "site bootstrap", "ScriptBootstrapAction": {"Path": cfg["bootstrap"], "Args": []}}]
                            if cfg["bootstrap"] else [])
    groups = [{"Name": "primary", "Market": "ON_DEMAND", "InstanceRole": "MASTER",
               "InstanceType": cfg["master_type"], "InstanceCount": 1}]
    if any(registry.get(s).runs_on == "cluster" for s in stages):
        groups.append({"Name": "core", "Market": "ON_DEMAND", "InstanceRole": "CORE",
                       "InstanceType": cfg["infer_core_type" if gpu else "core_type"],
                       "InstanceCount": int(cfg["infer_core_count" if gpu else "core_count"])})
        if not gpu and int(cfg["task_count"]):  # compute only, no HDFS: safe to lose, so spot if asked
            groups.append({"Name": "task", "Market": "SPOT" if cfg["task_spot"] else "ON_DEMAND",
                           "InstanceRole": "TASK", "InstanceType": cfg["task_type"],
                           "InstanceCount": int(cfg["task_count"])})
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
        "Tags": [{"Key": EMR_POLICY_TAG, "Value": "true"}, {"Key": "deeploc:cluster", "Value": name},
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


def step_name(stage: str, label: str, try_number: int) -> str:
    """A step's name: the stage, the run and the try, so each try finds (and cancels) its own steps only."""
    return f"deeploc {stage} {label} try{try_number}"[:256]


def emr_step(argv: list[str], plan: dict, result: str, name: str) -> dict:
    """One ``spark-submit`` of the stage's argument list; its result goes to ``result`` (``deeploc.step``)."""
    return {"Name": name, "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar",
                              "Args": ["spark-submit", "--deploy-mode", "client", plan["step_main"], result, *argv]}}


def training_user_data(plan: dict, argv: list[str], result: str, log_uri: str, hours: float) -> str:
    """The training instance's boot script: its settings, then ``scripts/train_instance.sh``."""
    q = shlex.quote
    settings = {"SETUP": plan["node_setup"], "WHEELS": plan["wheels"], "WHEEL": plan["wheel"],
                "PY": plan["python"], "RESULT": result, "LOG_URI": log_uri, "HOURS": str(int(-(-float(hours) // 1)))}
    lines = ["#!/bin/bash", "# DeepLocations training run, started by Airflow; the instance terminates when it ends.",
             *(f"{k}={q(v)}" for k, v in settings.items()), f"ARGS=({' '.join(map(q, argv))})"]
    return "\n".join(lines) + "\n" + (SCRIPTS / "train_instance.sh").read_text()


def build_wheelhouse(lake: str, code_prefix: str = "", extras: Sequence[str] = EXTRAS,
                     index_url: str | None = None) -> str:
    """Download the nodes' wheels for each extra and upload them under ``<lake>/_code/wheels/<lock>/``
    with a ``READY`` marker; return the prefix. Needs a package index (PyPI or a mirror) here, once."""
    from deeploc.storage.lake import Lake

    text = constraints()
    target = Lake(lake)
    prefix = wheelhouse_uri(lake, code_prefix, text)
    with tempfile.TemporaryDirectory(prefix="deeploc-wheelhouse-") as tmp:
        (Path(tmp) / "constraints.txt").write_text(text)
        for extra in extras:
            dest = Path(tmp) / extra
            res = subprocess.run(wheelhouse_command(extra, str(Path(tmp) / "constraints.txt"), str(dest), index_url),
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"pip download for the {extra} wheelhouse failed:\n{res.stderr[-3000:]}")
            target.upload(str(dest), f"{prefix}/{extra}")
            target.write_bytes(f"{prefix}/{extra}/READY", b"")
    return prefix


def wheelhouse_uri(lake: str, code_prefix: str, lock_text: str) -> str:
    """Where the wheelhouse of a lock lives: beside the code packages."""
    return f"{(code_prefix or lake.rstrip('/') + '/_code').rstrip('/')}/wheels/{wheelhouse_digest(lock_text)}"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="build the nodes' wheelhouse for this lock, once")
    ap.add_argument("command", choices=["wheelhouse"])
    ap.add_argument("--lake", required=True, help="the s3:// lake (the wheelhouse goes under <lake>/_code/wheels/)")
    ap.add_argument("--code-prefix", default="", help="the code_prefix of deeploc_aws, when set")
    ap.add_argument("--index-url", help="a PyPI mirror (default: PyPI)")
    args = ap.parse_args()
    print(build_wheelhouse(args.lake, args.code_prefix, index_url=args.index_url))
