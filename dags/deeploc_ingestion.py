"""Ingestion: YFCC100M metadata -> parsed rows -> clean, available, face-scored images, one upload-time
slice per run.

Each run parses what changed in the raw metadata (once per lake, a no-op when nothing changed), then
processes exactly its data interval of upload time and replaces that slice of the lake, so scheduled
reruns and backfills are safe, also several at once. The last run of a batch updates the
``deeploc_faces`` Asset, which triggers the model DAG. ``DOC`` is what the Airflow UI shows.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, TaskGroup, chain, task
from deeploc_airflow import aws_operators as aws
from deeploc_airflow.announce import announce_faces
from deeploc_airflow.local import choose_target, LocalStage
from deeploc_airflow.params import INGESTION
from deeploc_airflow.settings import STEP_CEILING_H
from deeploc_airflow.timetable import SliceTimetable

# A year per run by default; any month-aligned cron works (``@monthly``): slices are whole months.
SCHEDULE = os.environ.get("DEEPLOC_INGEST_SCHEDULE", "@yearly")
SLICE = {"start": "{{ data_interval_start | ds }}", "end": "{{ data_interval_end | ds }}"}
# The stages in order, with their options: the same argument lists run in both lanes.
STAGES = {"parse": {}, "metadata": SLICE, "availability": SLICE, "faces": SLICE}
STEP_LIMIT = timedelta(hours=STEP_CEILING_H)
DOC = """
### YFCC100M ingestion: one slice of upload time per run

**What a run processes.** `parse` reads whatever changed in the raw metadata files (once per lake: a no-op
when nothing changed). Then `metadata`, `availability` and `faces` process exactly the run's **data
interval** of upload time, and replace that slice of the lake: rerunning a slice never duplicates a row.

**One slice from the Trigger form.** *Single Run*, then *Data Interval: Specify Manually* with, for the
year 2010, start `2010-01-01 00:00` and end `2011-01-01 00:00`. With *Inferred from Logical Date and
Timetable*, a run processes the **year that contains its logical date** (a logical date anywhere in 2010
processes 2010), as scheduled and backfill runs do: a logical date names one slice however the run was
made. The slice is always whole months (UTC).

**Several years.** *Backfill* in the same dialog: a range such as 2004-01-01 to 2014-12-31 starts one run
per year, at most two at a time. Only the last run of a batch updates the `deeploc_faces` Asset, so the
model DAG then starts once, on the whole data.

**Parameters.** Every field may stay empty: the lake, the image bucket, the metadata files and the
target then come from the Variables `deeploc_lake`, `deeploc_bucket`, `deeploc_metadata`,
`deeploc_target`, the `DEEPLOC_*` environment, or the embedded demo under `.deeploc/`.

**Where the outputs land** (under the lake): `parsed/`, `metadata/`, `images/`, `faces/` (by
`upload_month`), `rejects/<stage>/` (every dropped row with its reason) and `_ledgers/<stage>/<slice>.json`
(rows in = out + rejected). On the `aws` target each stage is an EMR step on a transient cluster
(`aws.*` tasks; their *EMR* links open the cluster and its logs).
"""

with DAG(
    dag_id="deeploc_ingestion",
    description="YFCC100M metadata -> parsed/ -> metadata/ -> images/ -> faces/ for one upload-time slice",
    # Scheduled runs stop with YFCC100M's last year; manual and backfill runs may name any slice.
    schedule=SliceTimetable(SCHEDULE, "UTC", until=datetime(2015, 1, 1, tzinfo=timezone.utc)),
    start_date=datetime(2004, 1, 1, tzinfo=timezone.utc),
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
    doc_md=DOC,
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
