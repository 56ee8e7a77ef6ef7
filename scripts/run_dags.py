"""Run the DAGs on the local target through Airflow, in one process (``dag.test``), and report.

Ingestion runs once per data interval of its schedule between ``--from`` and ``--to`` (each run
replaces its slice, so reruns are safe), then the model DAG runs once with ``--conf``. The runs are
recorded in Airflow's database, so ``airflow standalone`` shows them afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone


def interval_ends(expression: str, start: datetime, end: datetime) -> list[datetime]:
    """Ends of the schedule's complete intervals in [start, end]: ``dag.test`` at an interval's end
    runs the interval before it (the manual-run rule of data-interval timetables)."""
    from croniter import croniter

    it = croniter(expression, start)
    ends = []
    while (nxt := it.get_next(datetime)) <= end:
        ends.append(nxt)
    return ends


def load_dags() -> dict:
    """Parse the dags folder once; any import error stops the run."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"DAG import error in {path}:\n{err}", file=sys.stderr)
        raise SystemExit(1)
    return bag.dags


def run(dag, **kw) -> str:
    """``dag.test`` one run on the local target; anything short of every local task succeeding (and the
    aws lane skipped) is a failure: Airflow calls a run whose tasks were never scheduled a success."""
    t0 = time.monotonic()
    dr = dag.test(**kw)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()} if dr else {}
    want = lambda tid: "skipped" if tid.startswith("aws.") else "success"  # noqa: E731
    ok = bool(states) and set(states) == set(dag.task_ids) and all(s == want(t) for t, s in states.items())
    state = "success" if ok else f"failed {states}"
    print(f"[deeploc] {dag.dag_id} {kw.get('logical_date') or ''} -> {state} in {time.monotonic() - t0:.0f} s", flush=True)
    return state


def report(conf: dict) -> None:
    """Where the results of the model run are, and its accuracy table."""
    sys.path.insert(0, os.environ.get("AIRFLOW__CORE__PLUGINS_FOLDER", ""))
    from deeploc_airflow.settings import resolve_local
    from deeploc_airflow.stage import safe_run_name

    lake = conf.get("lake") or resolve_local("lake")
    run_name = safe_run_name(conf["run"]) if conf.get("run") else None
    if run_name is None:
        with open(os.path.join(lake, "models", "LATEST.json")) as f:
            run_name = json.load(f)["run"]
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    rows = [("predictions", f"predictions/{run_name}/", "Parquet, one row per held-out photo"),
            ("accuracy table", f"metrics/{run_name}/accuracy.md", "also .csv and metrics.json"),
            ("web map", "site/index.html", "open it in a browser; works from file://"),
            ("row ledgers", "_ledgers/", "rows in = out + rejects, per stage and slice")]
    print("\n[deeploc] done. Results:")
    for name, rel, note in rows:
        print(f"  {name:<15} {os.path.join(lake, rel)}  ({note})")
    print(f"  {'Airflow UI':<15} ./dev ui   then open http://127.0.0.1:{port} (the runs above are there)\n")
    with open(os.path.join(lake, "metrics", run_name, "accuracy.md")) as f:
        print(f.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="start", default="2004-01-01")
    ap.add_argument("--to", dest="end", default="2015-01-01")
    ap.add_argument("--conf", default='{"run": "demo"}', help="model DAG run conf (JSON)")
    ap.add_argument("--skip-model", action="store_true")
    a = ap.parse_args()
    utc = lambda s: datetime.fromisoformat(s).replace(tzinfo=timezone.utc)  # noqa: E731
    failed = []
    dags = load_dags()
    ingestion = dags["deeploc_ingestion"]
    # dag.test names an interval by its end (the manual-run rule), and the last interval's end lies
    # past the DAG's end_date, which would make Airflow schedule no task at all: lift it for this copy.
    ingestion.end_date = None
    for task in ingestion.tasks:
        task.end_date = None
    schedule = os.environ.get("DEEPLOC_INGEST_SCHEDULE", "@yearly")
    for end in interval_ends(schedule, utc(a.start), utc(a.end)):
        if run(ingestion, logical_date=end) != "success":
            failed.append(f"deeploc_ingestion {end:%Y-%m-%d}")
    if not a.skip_model and not failed:
        conf = json.loads(a.conf)
        if run(dags["deeploc_model"], run_conf=conf) != "success":
            failed.append("deeploc_model")
        else:
            report(conf)
    if failed:
        print(f"[deeploc] FAILED: {', '.join(failed)} (task logs: $AIRFLOW_HOME/logs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
