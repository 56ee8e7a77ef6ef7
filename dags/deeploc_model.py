"""Model: partition -> train -> infer -> evaluate -> publish, on the clean images of the lake.

Runs when the ingestion DAG updates the ``deeploc_faces`` Asset, or by hand from the UI with params.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param
from deeploc_airflow import targets
from deeploc_airflow.assets import FACES

RUN = "{{ params.run or run_id }}"

with DAG(
    dag_id="deeploc_model",
    description="S2 partitions, training, distributed inference, accuracy at 5 scales, web map",
    schedule=[FACES],
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=48),
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True,
                  "execution_timeout": timedelta(hours=6)},
    params={
        "target": Param("", enum=["", "local", "aws"],
                        description="where stages run (empty: Variable deeploc_target / env / local)"),
        "run": Param("", type="string", description="model run name (empty: the DAG run id)"),
        "dataset": Param("full", enum=["full", "removal"], description="all images, or without faces"),
        "face_threshold": Param(0.035, type="number", minimum=0, maximum=1),
        "profile": Param("demo", enum=["demo", "yfcc"]),
        "partitions": Param("", type="string", description="name:tau_min:tau_max,... (empty: the profile's)"),
        "epochs": Param(0, type="integer", minimum=0, description="0: the profile's"),
        "backbone": Param("", type="string", description="empty: the profile's"),
        "lake": Param("", type="string"),
        "bucket": Param("", type="string"),
        "cluster_id": Param("", type="string", description="aws: an existing EMR cluster (empty: new ones)"),
        "train_ami": Param("", type="string", description="aws: the training AMI (empty: Variable deeploc_aws)"),
        "train_instance_type": Param("", type="string", description="aws: empty: g5.2xlarge or the Variable's"),
        "train_instance_profile": Param("", type="string", description="aws: the instance's IAM profile"),
        "train_subnet": Param("", type="string", description="aws: the instance's subnet"),
        "train_timeout_hours": Param(0, type="integer", minimum=0, description="aws: 0: 36 or the Variable's"),
    },
    tags=["deeploc", "model"],
    doc_md=__doc__,
) as dag:
    common = {"dataset": "{{ params.dataset }}", "profile": "{{ params.profile }}"}
    targets.wire(
        {"partition": {**common, "partitions": "{{ params.partitions }}",
                       "face_threshold": "{{ params.face_threshold }}"},
         "train": {**common, "run": RUN, "epochs": "{{ params.epochs or '' }}", "backbone": "{{ params.backbone }}"},
         "infer": {"run": RUN}, "evaluate": {"run": RUN}, "publish": {"run": RUN}},
        aws_blocks=[("prep", ["partition"]), "train", ("serve", ["infer", "evaluate", "publish"])],
        run=RUN, local_overrides={"train": {"execution_timeout": timedelta(hours=36)}})
