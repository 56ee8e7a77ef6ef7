"""Model: partition -> train -> infer -> evaluate -> publish, on the clean images of the lake.

Runs when the ingestion DAG updates the ``deeploc_faces`` Asset, or by hand from the UI with params.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param, chain
from deeploc_airflow.assets import FACES
from deeploc_airflow.stage import StageOperator

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
        "target": Param("local", enum=["local"], description="where stages run"),
        "run": Param("", type="string", description="model run name (empty: the DAG run id)"),
        "dataset": Param("full", enum=["full", "removal"], description="all images, or without faces"),
        "face_threshold": Param(0.035, type="number", minimum=0, maximum=1),
        "profile": Param("demo", enum=["demo", "yfcc"]),
        "partitions": Param("", type="string", description="name:tau_min:tau_max,... (empty: the profile's)"),
        "epochs": Param(0, type="integer", minimum=0, description="0: the profile's"),
        "backbone": Param("", type="string", description="empty: the profile's"),
        "lake": Param("", type="string"),
        "bucket": Param("", type="string"),
    },
    tags=["deeploc", "model"],
    doc_md=__doc__,
) as dag:
    chain(
        StageOperator(task_id="partition", stage="partition",
                      options={"dataset": "{{ params.dataset }}", "profile": "{{ params.profile }}",
                               "partitions": "{{ params.partitions }}", "face_threshold": "{{ params.face_threshold }}"}),
        StageOperator(task_id="train", stage="train", execution_timeout=timedelta(hours=36),
                      options={"run": RUN, "dataset": "{{ params.dataset }}", "profile": "{{ params.profile }}",
                               "epochs": "{{ params.epochs or '' }}", "backbone": "{{ params.backbone }}"}),
        StageOperator(task_id="infer", stage="infer", options={"run": RUN}),
        StageOperator(task_id="evaluate", stage="evaluate", options={"run": RUN}),
        StageOperator(task_id="publish", stage="publish", options={"run": RUN}),
    )
