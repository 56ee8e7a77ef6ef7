"""Model: partitioning -> shards -> train -> infer -> evaluate -> publish, on the clean images of the lake.

Runs when the last ingestion run of a batch updates the ``deeploc_faces`` Asset, with the deployment's
profile (Variable ``deeploc_profile``), or by hand from the UI with params.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, TaskGroup, chain, task
from deeploc_airflow import aws_operators as aws
from deeploc_airflow.assets import FACES
from deeploc_airflow.local import LocalStage, choose_target
from deeploc_airflow.params import MODEL
from deeploc_airflow.settings import STEP_CEILING_H, TRAIN_CEILING_H

RUN = "{{ params.run or run_id }}"
IMAGES = {"image_set": "{{ params.image_set }}", "profile": "{{ params.profile }}"}
# The stages in order, with their options: the same argument lists run in both lanes.
STAGES = {
    "partitioning": {**IMAGES, "partitionings": "{{ params.partitionings }}",
                     "face_threshold": "{{ params.face_threshold }}", "split_by": "{{ params.split_by }}",
                     "max_images": "{{ params.max_images or '' }}"},
    "shards": IMAGES,
    "train": {**IMAGES, "run": RUN, "epochs": "{{ params.epochs or '' }}", "backbone": "{{ params.backbone }}",
              "learning_rate": "{{ params.learning_rate or '' }}", "batch_size": "{{ params.batch_size or '' }}"},
    "infer": {"run": RUN, "crops": "{{ params.crops }}"},
    "evaluate": {"run": RUN},
    "publish": {"run": RUN},
}
# aws: the EMR clusters, each removed as soon as its stages are done (none idles through training);
# the partitioning runs on a primary node alone, the shards over core nodes, inference over GPU nodes.
CLUSTERS = {"prep": ["partitioning"], "shards": ["shards"], "serve": ["infer", "evaluate", "publish"]}
STEP_LIMIT, TRAIN_LIMIT = timedelta(hours=STEP_CEILING_H), timedelta(hours=TRAIN_CEILING_H)

with DAG(
    dag_id="deeploc_model",
    description="S2 partitionings, training, distributed inference, accuracy at 5 scales, web map",
    schedule=[FACES],
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # Above everything a run may take, so that tasks end by their own limits and teardowns still run.
    dagrun_timeout=timedelta(hours=8) + (len(STAGES) - 1) * STEP_LIMIT + TRAIN_LIMIT,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True,
                  "execution_timeout": timedelta(hours=1)},
    params=MODEL,
    tags=["deeploc", "model"],
    doc_md=__doc__,
) as dag:
    # local lane: each stage in the task's own process
    local = [LocalStage(task_id=stage, stage=stage, options=options,
                        execution_timeout=TRAIN_LIMIT if stage == "train" else STEP_LIMIT)
             for stage, options in STAGES.items()]

    # aws lane: a primary node for the partitioning, a cluster for the shards, a GPU instance to train, a
    # GPU cluster to serve
    with TaskGroup("aws", tooltip="the aws target: EMR steps and a GPU training instance"):
        plan = task(aws.plan, task_id="plan", multiple_outputs=True)(clusters=CLUSTERS, stages=list(STAGES))
        prep, prepare, end_prep = aws.emr_cluster("prep", CLUSTERS["prep"], STAGES, plan, STEP_LIMIT)
        shard, shards, end_shard = aws.emr_cluster("shards", CLUSTERS["shards"], STAGES, plan, STEP_LIMIT)
        train = aws.TrainOnInstance(task_id="train", options=STAGES["train"], plan=plan, execution_timeout=TRAIN_LIMIT)
        end_train = aws.TerminateTrainingInstances(task_id="terminate_training_instances", run_label=plan["label"])
        serve, steps, end_serve = aws.emr_cluster("serve", CLUSTERS["serve"], STAGES, plan, STEP_LIMIT)

    target = choose_target(local[0].task_id, "aws.plan")
    chain(target, *local)
    chain(target, plan, prep, *prepare, shard, *shards, train, serve, *steps)
    chain(prepare[-1], end_prep.as_teardown(setups=prep))
    chain(shards[-1], end_shard.as_teardown(setups=shard))
    # The launch and the wait are one task that fails as a whole, so the teardown hangs on the plan.
    chain(train, end_train.as_teardown(setups=plan))
    chain(steps[-1], end_serve.as_teardown(setups=serve))
