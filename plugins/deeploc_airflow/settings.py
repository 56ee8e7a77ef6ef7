"""Where the pipeline's locations and its target come from, resolved when a task runs (never at DAG
parse time).

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
}
TARGETS = ("local", "aws")

# The aws target. Instance types follow the benchmarks (docs/aws.md): metadata and availability are
# bound by bz2 decompression and S3 listing, faces by JPEG decode, inference by the backbone.
AWS_DEFAULTS = {
    "code_prefix": "",            # s3:// prefix for the code bundle; empty: <lake>/_code
    "log_uri": "",                # EMR logs; empty: <lake>/_logs/emr
    "release_label": "emr-spark-8.0.0",  # Spark 4.0 (the stages use 4.0 built-ins), Python 3.11
    "service_role": "EMR_DefaultRole",
    "job_flow_role": "EMR_EC2_DefaultRole",
    "subnet": "",                 # EMR and training subnet; empty: the account's default VPC
    "master_type": "r5.2xlarge",  # the partition stage runs on the driver: 48M points need memory
    "core_type": "m5.4xlarge",    # ingestion and partition clusters
    "core_count": 16,
    "infer_core_type": "g4dn.2xlarge",  # the inference cluster: GPU workers by default
    "infer_core_count": 4,
    "bootstrap": "",              # an extra bootstrap script (s3://) run after the project's own
    "cluster_id": "",             # an existing cluster: no cluster is created or terminated
    "step_timeout_hours": 12,
    "train_ami": "",              # a Deep Learning AMI with Python 3.11 and the NVIDIA driver
    "train_instance_type": "g5.2xlarge",
    "train_instance_profile": "deeploc-train",
    "train_subnet": "",
    "train_timeout_hours": 36,
    "python": "python3.11",       # the interpreter the bootstrap installs and Spark uses
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
    (JSON), then the run's params named like the keys (non-empty ones only)."""
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
    return merged
