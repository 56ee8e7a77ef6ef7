"""Model: partitioning -> shards -> train -> infer -> evaluate -> removal_effect -> publish, on the clean
images of the lake.

Runs when the last ingestion run of a batch updates the ``deeploc_faces`` Asset, with the deployment's
profile (Variable ``deeploc_profile``), or by hand from the UI with params.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, TaskGroup, chain, task
from deeploc_airflow import aws_operators as aws
from deeploc_airflow.assets import FACES
from deeploc_airflow.local import choose_target, LocalStage
from deeploc_airflow.params import MODEL, MODEL_STAGES, stage_options
from deeploc_airflow.settings import STEP_CEILING_H, TRAIN_CEILING_H

RUN = "{{ params.run or run_id }}"
# The stages in order, with their options (from the registry and the form): the same argument lists run
# in both lanes.
STAGES = {stage: stage_options(stage, MODEL, run=RUN) for stage in MODEL_STAGES}
# aws: the EMR clusters, each removed as soon as its stages are done (none idles through training);
# the partitioning runs on a primary node alone, the shards over core nodes, inference over GPU nodes.
CLUSTERS = {"prep": ["partitioning"], "shards": ["shards"], "serve": ["infer", "evaluate", "removal_effect", "publish"]}
STEP_LIMIT, TRAIN_LIMIT = timedelta(hours=STEP_CEILING_H), timedelta(hours=TRAIN_CEILING_H)
TRAIN_RETRIES = 3
DOC = """
### Model: partitionings, training, inference, evaluation, the web map

**What a run does**, on the clean images of the lake (`faces/`, written by `deeploc_ingestion`):
`partitioning` (adaptive S2 cells and the train / val / test split), `shards` (the photos resized once),
`train` (one softmax output per partitioning), `infer` (the test photos), `evaluate` (accuracy at
1 / 25 / 200 / 750 / 2500 km, country, continent), `removal_effect` (the report's Table 4: this run
and the latest run of the other image set, on the full run's test photos, with and without faces; it
says so and does nothing when there is no such run) and `publish` (the web map).

**When it runs.** By itself when the last ingestion run of a batch updates the `deeploc_faces` Asset,
with the deployment's profile (Variable `deeploc_profile`); or from *Trigger* with the form's values.
Every field may stay empty: empty means the Variable, the environment or the profile's default. The
logical date plays no part: a run always uses the lake as it is.

**Where the outputs land** (under the lake; `<run>` is the *run* field, or the DAG run's id):
`partitionings/<image set>/`, `shards/<image set>/`, `models/<run>/`, `predictions/<run>/`,
`metrics/<run>/accuracy.md`, `comparisons/removal_effect/table4.md`, and the web map in `site/` (locally: `./dev serve`, then
http://127.0.0.1:8000). The *Metrics* and *Web map* links on the `evaluate` and `publish` tasks open them.
"""

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
    doc_md=DOC,
) as dag:
    # local lane: each stage in the task's own process
    # Training resumes from its checkpoints: a lost (spot) instance costs a try, so it gets three.
    local = [LocalStage(task_id=stage, stage=stage, options=options,
                        execution_timeout=TRAIN_LIMIT if stage == "train" else STEP_LIMIT,
                        retries=TRAIN_RETRIES if stage == "train" else 1)
             for stage, options in STAGES.items()]

    # aws lane: a primary node for the partitioning, a cluster for the shards, a GPU instance to train, a
    # GPU cluster to serve
    with TaskGroup("aws", tooltip="the aws target: EMR steps and a GPU training instance"):
        plan = task(aws.plan, task_id="plan", multiple_outputs=True)(clusters=CLUSTERS, stages=list(STAGES))
        prep, prepare, end_prep = aws.emr_cluster("prep", CLUSTERS["prep"], STAGES, plan, STEP_LIMIT)
        shard, shards, end_shard = aws.emr_cluster("shards", CLUSTERS["shards"], STAGES, plan, STEP_LIMIT)
        train = aws.TrainOnInstance(task_id="train", options=STAGES["train"], plan=plan, execution_timeout=TRAIN_LIMIT,
                                    retries=TRAIN_RETRIES)
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
    # A cluster is asked for once the one before it is gone: together they would pass the quota the
    # plan checked (each cluster alone fits it), and the next would wait for vCPUs its own run holds.
    chain(end_prep, shard)
    chain(end_shard, serve)
