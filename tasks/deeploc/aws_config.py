"""The aws target's settings: clusters, the training instance, waits, and how they are layered.

One JSON object, merged key by key: ``DEFAULTS``, then the environment's ``DEEPLOC_AWS`` (JSON), then
(under Airflow) the Variable ``deeploc_aws`` and a run's params (``deeploc_airflow.settings``). The
plan (``deeploc plan``) and the operators read the same merged object. Instance types follow the
benchmarks (docs/aws.md): parse and availability are bound by decompression and S3 listing, faces by
JPEG decoding, inference by the backbone.
"""

from __future__ import annotations

import json
import os

# Ceilings (hours) of the aws tasks that wait, fixed when the DAG is parsed: the configured waits must
# stay under them, so that a wait always ends by its own limit (and the run's teardowns still run)
# rather than by the task's execution timeout.
STEP_CEILING_H, TRAIN_CEILING_H = 12, 48
EMR_POLICY_TAG = "for-use-with-amazon-emr-managed-policies"   # what AmazonEMRServicePolicy_v2 requires

DEFAULTS = {
    "code_prefix": "",            # s3:// prefix for the code package; empty: <lake>/_code
    "log_uri": "",                # EMR logs; empty: <lake>/_logs/emr
    "release_label": "emr-spark-8.0.0",  # Spark 4.0.2 (the local pyspark pin), Python 3.11
    "service_role": "EMR_DefaultRole",
    "job_flow_role": "EMR_EC2_DefaultRole",
    "subnet": "",                 # EMR and training subnet (tagged for the EMR managed policy: docs/aws.md)
    "master_type": "r5.2xlarge",  # partitioning, evaluate and publish run on the primary: 48M points need memory
    "core_type": "m5.4xlarge",    # clusters whose stages spread over core nodes (on demand: they hold HDFS)
    "core_count": 16,             # with the primary, 264 vCPUs: one cluster fills the quota docs/aws.md asks for
    "task_type": "m5.4xlarge",    # task nodes: compute only, so they may be spot instances
    "task_count": 0,
    "task_spot": True,
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
    "train_spot": False,          # a spot instance: cheaper; a reclaimed one checkpoints, the next try resumes
    "train_volume_gb": 200,       # the instance's root volume (the plan checks what training needs)
    "train_timeout_hours": 36,    # the training wait and the instance's own hard limit (<= TRAIN_CEILING_H)
    "python": "python3.11",       # the interpreter the bootstrap uses and Spark runs
    "poll_seconds": 60,           # how often waits look at a step or the training instance
    "capacity_wait_hours": 6,     # how long a cluster waits for vCPUs another cluster holds
}


def merged(*layers: tuple[str, str | dict | None]) -> dict:
    """``DEFAULTS`` updated by each (name, JSON text or dict) layer in turn; unknown keys are an error
    naming the layer, and the waits must stay under their ceilings."""
    out = dict(DEFAULTS)
    for source, layer in layers:
        if not layer:
            continue
        layer = json.loads(layer) if isinstance(layer, str) else layer
        unknown = set(layer) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        out.update(layer)
    for key, ceiling in (("step_timeout_hours", STEP_CEILING_H), ("train_timeout_hours", TRAIN_CEILING_H)):
        if not 0 < float(out[key]) <= ceiling:
            raise ValueError(f"{key} must be in (0, {ceiling}] hours (the task's own time limit), got {out[key]}")
    return out


def from_environment() -> dict:
    """The settings outside Airflow (``deeploc plan`` from a shell): the defaults and ``DEEPLOC_AWS``."""
    return merged(("env DEEPLOC_AWS", os.environ.get("DEEPLOC_AWS")))
