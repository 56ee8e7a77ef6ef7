"""Run the DAGs on the local target through Airflow, in one process (``dag.test``), and report.

Ingestion runs once per data interval of its schedule between ``--from`` and ``--to`` (each run
replaces its slice, so reruns are safe), then the model DAG twice: on the removal image set (run
``<run>-removal``), then with ``--conf``, whose ``removal_effect`` task pairs the two (the report's
Table 4); ``--no-removal`` runs only the second. The runs are
recorded in Airflow's database, so ``./dev ui`` shows them afterwards.

The terminal gets one line per task (what it did, rows in / out / rejected, seconds); everything
Airflow, Spark and TensorFlow log goes to a file under ``$DEEPLOC_LOGS``, named at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone


def intervals(expression: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The schedule's complete intervals in [start, end]; ``dag.test`` at an interval's start runs it
    (``deeploc_airflow.timetable``), the logical date a scheduled or backfill run of it would have."""
    from croniter import croniter

    it, out = croniter(expression, start), []
    while (nxt := it.get_next(datetime)) <= end:
        out.append((croniter(expression, nxt).get_prev(datetime), nxt))
    return out


def load_dags() -> dict:
    """Parse the dags folder once; any import error stops the run."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"DAG import error in {path}:\n{err}", file=sys.stderr)
        raise SystemExit(1)
    return bag.dags


def describe(stage: str, result) -> str:
    """What a stage's result says, in a few words."""
    if not isinstance(result, dict):
        return ""
    if stage == "parse" and result.get("parsed_now") == 0:
        return f"no new or changed file ({result['in']:,} lines parsed before)"
    if "in" in result and "out" in result:
        return f"in {result['in']:>6,}  out {result['out']:>6,}  rejected {result['rejected']:>5,}"
    if stage == "partitioning":
        return f"{result['images']:,} images, classes " + " / ".join(str(p["classes"]) for p in result["partitionings"])
    if stage == "train":
        return f"best epoch {result['best_epoch']}, fine-cell val accuracy {result['val_acc_fine_best']:.2f}"
    if stage == "evaluate":
        hier = next(r for r in result["table"] if r["method"] == "hierarchy")
        return f"{result['images']:,} photos, hierarchy within 750 km: {100 * hier['country_750km']:.1f} %"
    if "skipped" in result:
        return result["skipped"]
    if stage == "removal_effect":
        return (f"{result['full_run']} vs {result['removal_run']}: {result['photos']['all']:,} photos, "
                f"{result['photos']['without_faces']:,} without faces")
    if stage == "publish":
        return f"{result['points']:,} photos on the map"
    return ""


class TaskLines:
    """An Airflow listener (task SDK): one terminal line per finished task of the local lane."""

    def __init__(self, out):
        self.out, self.started, self.label = out, {}, ""

    def _hookimpl(fn):  # noqa: N805 - a decorator made lazily, so importing this file needs no Airflow
        from airflow.sdk._shared.listeners import hookimpl

        return hookimpl(fn)

    def write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @_hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        self.started[task_instance.task_id] = time.monotonic()

    @_hookimpl
    def on_task_instance_success(self, previous_state, task_instance):
        stage = getattr(task_instance.task, "stage", None)
        if stage is None:
            return
        took = time.monotonic() - self.started.get(task_instance.task_id, time.monotonic())
        result = task_instance.xcom_pull(task_ids=task_instance.task_id)
        self.write(f"  {self.label:<15} {stage:<13} {describe(stage, result):<52} {took:6.1f} s")

    @_hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        self.write(f"  {self.label:<15} {task_instance.task_id:<13} FAILED: {str(error).splitlines()[0][:200]}")


def run(dag, lines: TaskLines, label: str, **kw) -> bool:
    """``dag.test`` one run on the local target; anything short of every local task succeeding (and the
    aws lane skipped) is a failure: Airflow calls a run whose tasks were never scheduled a success."""
    lines.label = label
    dr = dag.test(**kw)
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()} if dr else {}
    want = lambda tid: "skipped" if tid.startswith("aws.") else "success"  # noqa: E731
    ok = bool(states) and set(states) == set(dag.task_ids) and all(
        s == want(t) or (t == "announce_faces" and s == "skipped") for t, s in states.items())
    if not ok:
        lines.write(f"  {label}: not every task succeeded: {states}")
    return ok


def report(conf: dict, out) -> None:
    """Where the results of the model run are, and its main accuracy table."""
    sys.path.insert(0, os.environ.get("AIRFLOW__CORE__PLUGINS_FOLDER", ""))
    from deeploc.storage import commit, runs
    from deeploc.storage.lake import Lake
    from deeploc_airflow.argv import safe_run_name
    from deeploc_airflow.settings import resolve_local

    lake = Lake(conf.get("lake") or resolve_local("lake"))
    run_name = runs.resolve(lake, safe_run_name(conf["run"]) if conf.get("run") else None)
    metrics = commit.current(lake, f"metrics/{run_name}")
    port = os.environ.get("AIRFLOW__API__PORT", "8080")
    rows = [("predictions", f"deeploc tables --lake {lake.root}", f"table deeploc.predictions, run {run_name}"),
            ("accuracy table", f"{metrics}/accuracy.md", "also .csv and metrics.json"),
            ("web map", f"{commit.current(lake, 'site')}/index.html", "open it in a browser; works from file://"),
            ("row ledgers", lake.path("_ledgers"), "rows in = out + rejects, per stage and slice")]
    out.write("\n[deeploc] done. Results:\n")
    for name, where, note in rows:
        out.write(f"  {name:<15} {where}  ({note})\n")
    out.write(f"  {'Airflow UI':<15} ./dev ui   then open http://127.0.0.1:{port} (the runs above are there; "
              "the web map is in its menu)\n\n")
    with open(f"{metrics}/accuracy.md") as f:  # the main table; per user, continent and country: in the file
        out.write(f.read().split("\n\n")[0] + "\n\n(every user weighing the same, per continent and per country: "
                  "accuracy.md)\n")
    effect = commit.current(lake, "comparisons/removal_effect")
    if effect:
        with open(f"{effect}/table4.json") as f:
            table = json.load(f)
        out.write(f"\nTable 4: {table['removal_run']} (trained without photos of people) minus {table['full_run']}, "
                  f"hierarchy, points of accuracy [95 % interval, users resampled]; all of it in {effect}/table4.md\n")
        for subset, rows in table["rows"].items():
            cells = [f"{r['scale']}: {100 * r['difference']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
                     for r in rows if r["output"] == "hierarchy" and r["difference"] is not None]
            out.write(f"  {subset.replace('_', ' ')} ({table['photos'][subset]:,} photos): {'; '.join(cells)}\n")


def to_log_file(folder: str):
    """Send this process's own output (and its children's: Spark's JVM) to a new log file; return
    (the terminal, the log's path)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"dags-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.log")
    terminal = os.fdopen(os.dup(1), "w")
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    return terminal, path


def main() -> int:
    terminal, log_path = to_log_file(os.environ.get("DEEPLOC_LOGS") or os.path.join(os.getcwd(), ".deeploc", "logs"))
    terminal.write(f"[deeploc] full logs (Airflow, Spark, TensorFlow): {log_path}\n")
    try:
        return run_all(terminal, log_path)
    except BaseException as exc:
        import traceback

        terminal.write("".join(traceback.format_exception(exc)[-6:]) + f"[deeploc] stopped; full logs: {log_path}\n")
        return 1
    finally:
        terminal.flush()


def run_all(terminal, log_path: str) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="start", default="2004-01-01")
    ap.add_argument("--to", dest="end", default="2015-01-01")
    ap.add_argument("--conf", default='{"run": "demo"}', help="model DAG run conf (JSON)")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--no-removal", action="store_true", help="skip the removal run before the model run")
    a = ap.parse_args()
    from airflow.sdk.listener import get_listener_manager

    from deeploc.storage.slices import Slice

    lines = TaskLines(terminal)
    get_listener_manager().add_listener(lines)
    utc = lambda s: datetime.fromisoformat(s).replace(tzinfo=timezone.utc)  # noqa: E731
    failed, t0 = [], time.monotonic()
    dags = load_dags()
    ingestion = dags["deeploc_ingestion"]
    todo = intervals(os.environ.get("DEEPLOC_INGEST_SCHEDULE", "@yearly"), utc(a.start), utc(a.end))
    for i, (start, end) in enumerate(todo):
        label = f"ingestion {Slice.of(start, end).name}"
        terminal.write(f"[{i + 1}/{len(todo)}] {label}\n")
        if not run(ingestion, lines, label, logical_date=start):
            failed.append(label)
    if not a.skip_model and not failed:
        # Explicit image set: dag.test keeps one run's conf in the DAG's params for the next run.
        conf = {"image_set": "full", **json.loads(a.conf)}
        todo = [] if a.no_removal or conf.get("image_set") == "removal" else [
            {**conf, "run": f"{conf.get('run') or 'model'}-removal", "image_set": "removal"}]
        for i, c in enumerate(todo + [conf]):
            label = f"model {c.get('run', '')}".strip()
            terminal.write(f"[model {i + 1}/{len(todo) + 1}] deeploc_model, run {c.get('run', '(its id)')} "
                           f"on the {c.get('image_set', 'full')} image set\n")
            if not run(dags["deeploc_model"], lines, label, run_conf=c):
                failed.append(label)
                break
        else:
            report(conf, terminal)
    terminal.write(f"[deeploc] {'FAILED: ' + ', '.join(failed) if failed else 'all runs succeeded'} "
                   f"in {time.monotonic() - t0:.0f} s; full logs: {log_path}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
