"""Ingestion: YFCC100M metadata -> parsed rows -> clean, available, face-scored images, one upload-time
slice per run.

Each run parses what changed in the raw metadata (once per lake, a no-op when nothing changed), then
processes exactly its data interval of upload time and replaces that slice of the lake, so scheduled
reruns and backfills are safe, also several at once. The last run of a batch updates the
``deeploc_faces`` Asset, which triggers the model DAG.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, CronDataIntervalTimetable, TaskGroup, chain, task
from deeploc_airflow import aws_operators as aws
from deeploc_airflow.announce import announce_faces
from deeploc_airflow.local import LocalStage, choose_target
from deeploc_airflow.params import INGESTION
from deeploc_airflow.settings import STEP_CEILING_H

# A year per run by default; any month-aligned cron works (``@monthly``): slices are whole months.
SCHEDULE = os.environ.get("DEEPLOC_INGEST_SCHEDULE", "@yearly")
SLICE = {"start": "{{ data_interval_start | ds }}", "end": "{{ data_interval_end | ds }}"}
# The stages in order, with their options: the same argument lists run in both lanes.
STAGES = {"parse": {}, "metadata": SLICE, "availability": SLICE, "faces": SLICE}
STEP_LIMIT = timedelta(hours=STEP_CEILING_H)

with DAG(
    dag_id="deeploc_ingestion",
    description="YFCC100M metadata -> parsed/ -> metadata/ -> images/ -> faces/ for one upload-time slice",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=datetime(2004, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2014, 12, 31, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=2,
    max_active_tasks=4,
    # Above everything a run may take (plan, cluster start, every step at its limit, teardown), so that tasks
    # end by their own limits and the teardown still runs; the clusters' idle end is the last backstop.
    dagrun_timeout=timedelta(hours=6) + len(STAGES) * STEP_LIMIT,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True,
                  "max_retry_delay": timedelta(minutes=20), "execution_timeout": timedelta(hours=1)},
    params=INGESTION,
    tags=["deeploc", "ingestion"],
    doc_md=__doc__,
) as dag:
    # local lane: each stage in the task's own process
    local = [LocalStage(task_id=stage, stage=stage, options=options, execution_timeout=STEP_LIMIT)
             for stage, options in STAGES.items()]

    # aws lane: one transient EMR cluster (or a given one), one step per stage, removed whatever happens
    with TaskGroup("aws", tooltip="the aws target: EMR steps on a transient cluster"):
        plan = task(aws.plan, task_id="plan", multiple_outputs=True)(clusters={"ingest": list(STAGES)},
                                                                      stages=list(STAGES))
        cluster, steps, terminate = aws.emr_cluster("ingest", list(STAGES), STAGES, plan, STEP_LIMIT)

    target = choose_target(local[0].task_id, "aws.plan")
    announce = announce_faces()
    chain(target, *local, announce)
    chain(target, plan, cluster, *steps, announce)
    chain(steps[-1], terminate.as_teardown(setups=cluster))
