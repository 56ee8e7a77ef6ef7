"""Where the pipeline's locations, target and profile come from, resolved when a task runs (never at
DAG parse time).

Order: the DAG run's param, then the Airflow Variable ``deeploc_<name>``, then the environment
variable ``DEEPLOC_<NAME>``, then the embedded default under ``.deeploc/`` in the repository.
The aws target's cluster and instance settings are one JSON object, merged the same way key by key
(see ``AWS_DEFAULTS`` and docs/aws.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / ".deeploc" / "demo"
DEFAULTS = {
    "lake": str(REPO / ".deeploc" / "lake"),
    "bucket": str(DEMO / "bucket"),
    "metadata": str(DEMO / "metadata" / "*.bz2"),
    "target": "local",
    "profile": "demo",   # what model runs train when a run does not say (Asset-triggered runs never do)
}
TARGETS = ("local", "aws")

# Ceilings (hours) of the aws tasks that wait, fixed when the DAG is parsed: the configured waits
# below must stay under them, so that a wait always ends by its own limit (and the run's teardowns
# still run) rather than by the task's execution timeout.
STEP_CEILING_H, TRAIN_CEILING_H = 12, 48

# The aws target. Instance types follow the benchmarks (docs/aws.md): parse and availability are
# bound by decompression and S3 listing, faces by JPEG decoding, inference by the backbone.
AWS_DEFAULTS = {
    "code_prefix": "",            # s3:// prefix for the code package; empty: <lake>/_code
    "log_uri": "",                # EMR logs; empty: <lake>/_logs/emr
    "release_label": "emr-spark-8.0.0",  # Spark 4.0.2 (the local pyspark pin), Python 3.11
    "service_role": "EMR_DefaultRole",
    "job_flow_role": "EMR_EC2_DefaultRole",
    "subnet": "",                 # EMR and training subnet (tagged for the EMR managed policy: docs/aws.md)
    "master_type": "r5.2xlarge",  # partitioning, evaluate and publish run on the primary: 48M points need memory
    "core_type": "m5.4xlarge",    # clusters whose stages spread over core nodes
    "core_count": 16,
    "infer_core_type": "g4dn.2xlarge",  # the inference cluster: one GPU per core node
    "infer_core_count": 4,
    "infer_executor_cores": 8,    # all of a g4dn.2xlarge's vCPUs, for one inference task
    "infer_executor_memory": "18g",  # more than half of what YARN offers on that node: one executor per node
    "root_volume_gb": 64,         # EMR nodes: the CUDA build of TensorFlow alone is ~6 GB
    "idle_minutes": 60,           # clusters end themselves after this long without a step: the backstop
    "bootstrap": "",              # an extra bootstrap script (s3://) run after the project's own
    "cluster_id": "",             # an existing cluster: no cluster is created or terminated
    "step_timeout_hours": 6,      # each EMR step (<= STEP_CEILING_H)
    "train_ami": "",              # an Amazon Linux 2023 Deep Learning AMI (NVIDIA driver, Python 3.11)
    "train_instance_type": "g5.2xlarge",
    "train_instance_profile": "deeploc-train",
    "train_subnet": "",
    "train_spot": False,          # a spot instance: cheaper; a lost one is replaced and training resumes
    "train_volume_gb": 200,       # the instance's root volume: image shards are read from the lake, not kept
    "train_timeout_hours": 36,    # the training wait and the instance's own hard limit (<= TRAIN_CEILING_H)
    "python": "python3.11",       # the interpreter the bootstrap uses and Spark runs
    "poll_seconds": 60,           # how often waits look at a step or the training instance
}


def resolve(name: str, params: dict | None = None) -> str:
    """Inside a running task: param, Variable, environment, default."""
    if params and params.get(name):
        return str(params[name])
    from airflow.sdk import Variable

    return Variable.get(f"deeploc_{name}", default=None) or resolve_local(name)


def resolve_local(name: str) -> str:
    """Outside a task (no Variables to ask): environment, then default."""
    return os.environ.get(f"DEEPLOC_{name.upper()}") or DEFAULTS[name]


def resolve_target(params: dict | None = None) -> str:
    target = resolve("target", params)
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is unknown; choose one of {TARGETS}")
    return target


def resolve_aws(params: dict | None = None) -> dict:
    """The aws settings: defaults, then env ``DEEPLOC_AWS`` (JSON), then Variable ``deeploc_aws``
    (JSON), then the run's params named like the keys (non-empty ones only); checked against the ceilings."""
    from airflow.sdk import Variable

    merged = dict(AWS_DEFAULTS)
    for source, raw in (("env DEEPLOC_AWS", os.environ.get("DEEPLOC_AWS")),
                        ("Variable deeploc_aws", Variable.get("deeploc_aws", default=None))):
        if raw:
            layer = json.loads(raw)
            unknown = set(layer) - set(AWS_DEFAULTS)
            if unknown:
                raise ValueError(f"{source}: unknown keys {sorted(unknown)}; known: {sorted(AWS_DEFAULTS)}")
            merged.update(layer)
    merged.update({k: v for k, v in (params or {}).items() if k in AWS_DEFAULTS and v not in ("", None, 0)})
    for key, ceiling in (("step_timeout_hours", STEP_CEILING_H), ("train_timeout_hours", TRAIN_CEILING_H)):
        if not 0 < float(merged[key]) <= ceiling:
            raise ValueError(f"{key} must be in (0, {ceiling}] hours (the task's own time limit), got {merged[key]}")
    return merged
