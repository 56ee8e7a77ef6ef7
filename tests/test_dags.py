"""DAG integrity: the dags folder imports cleanly and every house rule holds, per DAG and task."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import REPO

DAGS = REPO / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"deeploc_ingestion", "deeploc_model"}


def test_tags_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert "deeploc" in dag.tags, dag_id
        assert dag.doc_md, dag_id


def test_every_task_retries_and_times_out(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.dagrun_timeout is not None, dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=36), \
                f"{dag_id}.{task.task_id} has no execution timeout"
            if getattr(task, "timeout", None) is not None:  # sensors
                assert task.timeout > 0, f"{dag_id}.{task.task_id}"


def test_no_cycles(dagbag):
    for dag_id, dag in dagbag.dags.items():
        state = {}

        def visit(tid):
            assert state.get(tid) != "open", f"cycle through {dag_id}.{tid}"
            if state.get(tid) == "done":
                return
            state[tid] = "open"
            for d in dag.get_task(tid).downstream_task_ids:
                visit(d)
            state[tid] = "done"

        for t in dag.task_ids:
            visit(t)


def test_shapes(dagbag):
    ing, model = dagbag.dags["deeploc_ingestion"], dagbag.dags["deeploc_model"]
    assert ing.catchup is False and ing.max_active_runs <= 4
    assert type(ing.timetable).__name__ == "CronDataIntervalTimetable"
    assert ing.get_task("availability").upstream_task_ids == {"metadata"}
    assert ing.get_task("faces").upstream_task_ids == {"availability"}
    assert [o.name for o in ing.get_task("faces").outlets] == ["deeploc_faces"]
    assert model.get_task("publish").upstream_task_ids == {"evaluate"}
    assert type(model.timetable).__name__ == "AssetTriggeredTimetable"
    assert [a.name for a in model.timetable.asset_condition.objects] == ["deeploc_faces"]
    assert set(model.params.keys()) >= {"dataset", "profile", "partitions", "epochs", "backbone", "face_threshold"}


def test_both_targets_share_one_shape(dagbag):
    """A branch picks the lane; the aws lane runs the same stages in the same order, each EMR cluster
    and the training instance torn down by a teardown task, every sensor in reschedule mode."""
    for dag in dagbag.dags.values():
        local = [t.task_id for t in dag.tasks if type(t).__name__ == "StageOperator"]
        assert dag.get_task("target").downstream_task_ids == {local[0], "aws.plan"}
        submitted = [t.stage for t in dag.tasks if t.task_id.startswith("aws.") and hasattr(t, "stage")]
        assert submitted == local, dag.dag_id
        teardowns = [t for t in dag.tasks if t.is_teardown]
        assert teardowns and all(t.task_id.startswith("aws.terminate_") for t in teardowns)
        for t in dag.tasks:
            if hasattr(t, "poke"):
                assert t.mode == "reschedule" and hasattr(t, "timeout_hours"), t.task_id


def test_parsing_imports_nothing_heavy():
    code = ("import sys, runpy; sys.path.insert(0, %r);"
            "[runpy.run_path(p) for p in %r];"
            "heavy = [m for m in ('pyspark', 'tensorflow', 'keras', 'cv2', 'deeploc.stages') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)") % (str(REPO / "plugins"),
                                                         [str(p) for p in sorted(DAGS.glob("*.py"))])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


def test_operator_arguments_are_what_the_cli_takes(dagbag):
    """Render each task's templated options with the DAG's default params and parse them with the CLI."""
    from datetime import datetime, timezone

    import jinja2
    from deeploc.cli import parser
    from deeploc_airflow.stage import StageOperator

    locations = {"lake": "/l", "bucket": "/b", "metadata": "/m/*.bz2"}
    for dag in dagbag.dags.values():
        params = {k: dag.params[k] for k in dag.params}
        context = {"params": params, "run_id": "manual__2024-05-01T00:00:00+00:00",
                   "data_interval_start": datetime(2010, 1, 1, tzinfo=timezone.utc),
                   "data_interval_end": datetime(2011, 1, 1, tzinfo=timezone.utc)}
        for task in (t for t in dag.tasks if isinstance(t, StageOperator)):
            task.options = {k: jinja2.Template(str(v)).render(**context) for k, v in task.options.items()}
            argv = task.argv({**params, **locations})
            ns = parser().parse_args(argv)  # exits (fails the test) on any flag or value the CLI refuses
            assert ns.command == task.stage and ns.lake == "/l"
            if task.stage == "metadata":
                assert (ns.start, ns.end) == ("2010-01-01", "2011-01-01")
            if task.stage in ("train", "infer", "evaluate", "publish"):
                assert ns.run == "manual__2024-05-01T00_00_00_00_00"


def test_run_names_are_safe():
    from deeploc_airflow.stage import safe_run_name

    assert safe_run_name("manual__2024-01-01T00:00:00+00:00") == "manual__2024-01-01T00_00_00_00_00"
    for hostile in ("../../etc", "..", "/abs/path", "a b;c"):
        name = safe_run_name(hostile)
        assert "/" not in name and not name.startswith(".") and " " not in name and name
