"""Ingestion: YFCC100M metadata -> clean, available, face-scored images, one upload-time slice per run.

Each run processes exactly its data interval of upload time and replaces that slice of the lake, so
scheduled reruns and backfills (``airflow backfill create``) are safe. The last task updates the
``deeploc_faces`` Asset, which triggers the model DAG.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, CronDataIntervalTimetable, Param
from deeploc_airflow import targets
from deeploc_airflow.assets import FACES

# A year per run by default: every run reads the whole metadata input, so fewer, wider slices are
# cheaper on the full data set; ``@monthly`` works the same (slices are month-aligned).
SCHEDULE = os.environ.get("DEEPLOC_INGEST_SCHEDULE", "@yearly")
INTERVAL = {"start": "{{ data_interval_start.strftime('%Y-%m-%d') }}",
            "end": "{{ data_interval_end.strftime('%Y-%m-%d') }}"}

with DAG(
    dag_id="deeploc_ingestion",
    description="YFCC100M metadata -> metadata/ -> images/ -> faces/ for one upload-time slice",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=datetime(2004, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2014, 12, 31, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=2,
    max_active_tasks=2,
    dagrun_timeout=timedelta(hours=12),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True,
                  "max_retry_delay": timedelta(minutes=20), "execution_timeout": timedelta(hours=4)},
    params={"target": Param("", enum=["", "local", "aws"],
                            description="where stages run (empty: Variable deeploc_target / env / local)"),
            "cluster_id": Param("", type="string", description="aws: an existing EMR cluster (empty: a new one)"),
            "lake": Param("", type="string", description="lake root (empty: variable / env / default)"),
            "bucket": Param("", type="string", description="image bucket root (empty: variable / env / default)"),
            "metadata": Param("", type="string", description="metadata files or glob (empty: variable / env / default)")},
    tags=["deeploc", "ingestion"],
    doc_md=__doc__,
) as dag:
    targets.wire({"metadata": INTERVAL, "availability": INTERVAL, "faces": INTERVAL},
                 aws_blocks=[("ingest", ["metadata", "availability", "faces"])],
                 run="{{ data_interval_start.strftime('%Y-%m') }}", outlets=[FACES])
