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


DAG_IDS = ("deeploc_ingestion", "deeploc_model")
per_dag = pytest.mark.parametrize("dag_id", DAG_IDS)   # one result per DAG: a failure in one hides nothing


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}  # a cycle, too, is an import error
    assert set(dagbag.dag_ids) == set(DAG_IDS)


@per_dag
def test_tags_and_docs(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "deeploc" in dag.tags and dag.doc_md


@per_dag
def test_every_task_retries_and_times_out(dagbag, dag_id):
    for task in dagbag.dags[dag_id].tasks:
        assert task.retries >= 1, f"{task.task_id} has no retries"
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=48), \
            f"{task.task_id} has no execution timeout"


def _longest_path(dag) -> timedelta:
    """The most time the tasks of one path may take, each at its execution timeout (retries aside)."""
    memo = {}

    def from_(tid):
        if tid not in memo:
            task = dag.get_task(tid)
            memo[tid] = task.execution_timeout + max((from_(d) for d in task.downstream_task_ids), default=timedelta(0))
        return memo[tid]

    return max(from_(t) for t in dag.task_ids)


@per_dag
def test_a_run_outlasts_everything_in_it(dagbag, dag_id):
    """A run timeout would skip the teardowns: it must never fire before the tasks' own limits."""
    dag = dagbag.dags[dag_id]
    assert dag.dagrun_timeout >= _longest_path(dag)


@per_dag
def test_waits_stay_under_their_tasks_limits(dagbag, dag_id):
    """The longest wait (a step's, training's) that the settings accept ends before Airflow's own limit on
    the task would cut it: the operator, not the timeout, says what went wrong."""
    from deeploc import aws_config

    def longest_accepted(key: str) -> int:
        accepted = 0
        for hours in range(1, 200):
            try:
                aws_config.merged(("test", {key: hours}))
                accepted = hours
            except ValueError:
                pass
        return accepted

    waits = {"EmrStage": longest_accepted("step_timeout_hours"), "TrainOnInstance": longest_accepted("train_timeout_hours")}
    assert 0 < waits["EmrStage"] < 199 and 0 < waits["TrainOnInstance"] < 199  # the settings refuse longer waits
    for task in dagbag.dags[dag_id].tasks:
        if type(task).__name__ in waits:
            assert task.execution_timeout >= timedelta(hours=waits[type(task).__name__]), task.task_id


def test_shapes(dagbag):
    ing, model = dagbag.dags["deeploc_ingestion"], dagbag.dags["deeploc_model"]
    assert ing.catchup is False and ing.max_active_runs <= 4
    assert type(ing.timetable).__name__ == "SliceTimetable"
    assert [ing.get_task(t).upstream_task_ids for t in ("metadata", "availability", "faces")] == \
        [{"parse"}, {"metadata"}, {"availability"}]
    announce = ing.get_task("announce_faces")
    assert announce.upstream_task_ids == {"faces", "aws.faces"} and [o.name for o in announce.outlets] == ["deeploc_faces"]
    assert model.get_task("removal_effect").upstream_task_ids == {"evaluate"}
    assert model.get_task("publish").upstream_task_ids == {"removal_effect"}
    assert type(model.timetable).__name__ == "AssetTriggeredTimetable"
    assert [a.name for a in model.timetable.asset_condition.objects] == ["deeploc_faces"]
    assert set(model.params.keys()) >= {"image_set", "profile", "partitionings", "epochs", "backbone", "face_threshold"}
    assert model.params["profile"] is None  # Asset-triggered runs use the deployment's profile


@per_dag
def test_both_targets_share_one_shape(dagbag, dag_id):
    """A branch picks the lane; the aws lane runs the same stages in the same order, and everything it
    creates is removed by a teardown."""
    dag = dagbag.dags[dag_id]
    local = [t.stage for t in dag.tasks if type(t).__name__ == "LocalStage"]
    assert dag.get_task("target").downstream_task_ids == {local[0], "aws.plan"}
    remote = [t.stage for t in dag.tasks if t.task_id.startswith("aws.") and hasattr(t, "stage")]
    assert remote == local
    creates = {t.task_id for t in dag.tasks if type(t).__name__ in ("TransientCluster", "TrainOnInstance")}
    teardowns = [t for t in dag.tasks if t.is_teardown]
    assert {u for t in teardowns for u in t.upstream_task_ids if u in creates} == creates
    assert all(dag.get_task(u).is_setup for t in teardowns for u in t.upstream_task_ids
               if type(dag.get_task(u)).__name__ == "TransientCluster")


def test_parsing_imports_nothing_heavy():
    code = ("import sys, runpy; sys.path.insert(0, %r);"
            "[runpy.run_path(p) for p in %r];"
            "heavy = [m for m in ('pyspark', 'tensorflow', 'keras', 'cv2', 'deeploc.stages') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)") % (str(REPO / "plugins"),
                                                         [str(p) for p in sorted(DAGS.glob("*.py"))])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


@per_dag
def test_operator_arguments_are_what_the_cli_takes(dagbag, dag_id):
    """Render each task's templated options with Airflow itself, at the DAG's default params, and parse
    them with the CLI."""
    import copy
    from datetime import datetime, timezone

    from deeploc.cli import parser
    from deeploc_airflow.local import LocalStage

    locations = {"lake": "/l", "bucket": "/b", "metadata": "/m/*.bz2"}
    dag = dagbag.dags[dag_id]
    params = {k: dag.params[k] for k in dag.params}
    context = {"params": params, "run_id": "manual__2024-05-01T00:00:00+00:00",
               "data_interval_start": datetime(2010, 1, 1, tzinfo=timezone.utc),
               "data_interval_end": datetime(2011, 1, 1, tzinfo=timezone.utc)}
    for task in (copy.copy(t) for t in dag.tasks if isinstance(t, LocalStage)):
        task.render_template_fields(context)
        argv = task.argv({**params, **locations})
        ns = parser().parse_args(argv)  # exits (fails the test) on any flag or value the CLI refuses
        assert ns.command == task.stage and ns.lake == "/l"
        if task.stage == "parse":
            assert ns.input == ["/m/*.bz2"]
        if task.stage == "metadata":
            assert (ns.start, ns.end) == ("2010-01-01", "2011-01-01")
        if task.stage in ("train", "infer", "evaluate", "removal_effect", "publish"):
            assert ns.run == "manual__2024-05-01T00_00_00_00_00"
        if task.stage in ("partitioning", "train"):
            assert ns.profile == "demo"  # the empty param resolved to the setting's default
        if task.stage == "train":
            assert ns.epochs is None and ns.backbone is None  # empty params leave the flags out
        if task.stage == "partitioning":
            assert (ns.face_threshold, ns.split_by, ns.max_images) == (0.035, "user", None)


def test_a_manual_run_processes_the_slice_of_its_logical_date():
    """The interval a scheduled or backfill run with the same logical date would have (hand-written)."""
    from deeploc_airflow.timetable import SliceTimetable
    from pendulum import datetime as dt

    yearly, monthly = SliceTimetable("@yearly", "UTC"), SliceTimetable("@monthly", "UTC")
    for run_after, (start, end) in [(dt(2010, 1, 1), (dt(2010, 1, 1), dt(2011, 1, 1))),
                                    (dt(2010, 6, 15, 13), (dt(2010, 1, 1), dt(2011, 1, 1))),
                                    (dt(2014, 12, 31, 23, 59), (dt(2014, 1, 1), dt(2015, 1, 1)))]:
        interval = yearly.infer_manual_data_interval(run_after=run_after)
        assert (interval.start, interval.end) == (start, end), run_after
    interval = monthly.infer_manual_data_interval(run_after=dt(2010, 3, 9))
    assert (interval.start, interval.end) == (dt(2010, 3, 1), dt(2010, 4, 1))


def test_scheduled_runs_end_with_the_data():
    from airflow.timetables.base import DataInterval, TimeRestriction
    from deeploc_airflow.timetable import SliceTimetable
    from pendulum import datetime as dt

    table = SliceTimetable.deserialize(SliceTimetable("@yearly", "UTC", until=dt(2015, 1, 1)).serialize())
    restriction = TimeRestriction(earliest=dt(2004, 1, 1), latest=None, catchup=True)
    nxt = table.next_dagrun_info(last_automated_data_interval=DataInterval(dt(2013, 1, 1), dt(2014, 1, 1)),
                                 restriction=restriction)
    assert (nxt.data_interval.start, nxt.data_interval.end) == (dt(2014, 1, 1), dt(2015, 1, 1))
    assert table.next_dagrun_info(last_automated_data_interval=DataInterval(dt(2014, 1, 1), dt(2015, 1, 1)),
                                  restriction=restriction) is None


@per_dag
def test_the_trigger_form_is_valid_as_it_opens(dagbag, dag_id):
    """Every param validates at its default, and none that the UI marks required (a schema type without
    "null") starts empty: the form's Trigger button works with nothing typed (the browser test shows it)."""
    params = dagbag.dags[dag_id].params
    params.validate()
    for name in params:
        param = params.get_param(name)
        kind = param.schema.get("type")
        if not (isinstance(kind, list) and "null" in kind):
            assert param.value not in (None, ""), f"{dag_id}.{name} is required by the form and empty"


def test_a_new_option_is_one_edit_in_the_registry(monkeypatch):
    """The README's example: one Option with ``form`` on train, and the model DAG's form offers it in its
    section and passes it to train, and to no stage without that option."""
    import dataclasses

    from deeploc import registry
    from deeploc_airflow import params

    train = registry.get("train")
    added = registry.Option("label_smoothing", "label smoothing of the loss", float, 0.0, minimum=0, form="model")
    monkeypatch.setitem(registry.STAGES, "train", dataclasses.replace(train, options=(*train.options, added)))
    form = params.form(params.MODEL_STAGES, {})
    assert form["label_smoothing"].schema["section"] == "Model: training and prediction"
    assert form["label_smoothing"].value == 0.0
    got = {stage: params.stage_options(stage, form, run="r") for stage in params.MODEL_STAGES}
    assert got["train"]["label_smoothing"] == "{{ '' if params.label_smoothing is none else params.label_smoothing }}"
    assert [stage for stage, options in got.items() if "label_smoothing" in options] == ["train"]


def test_an_unknown_option_is_refused_when_the_dag_is_parsed():
    from deeploc_airflow.local import LocalStage

    with pytest.raises(ValueError, match="takes no option"):
        LocalStage(task_id="x", stage="faces", options={"strat": "2010-01-01"})


def test_run_names_are_safe():
    from deeploc_airflow.argv import safe_run_name

    assert safe_run_name("manual__2024-01-01T00:00:00+00:00") == "manual__2024-01-01T00_00_00_00_00"
    for hostile in ("../../etc", "..", "/abs/path", "a b;c"):
        name = safe_run_name(hostile)
        assert "/" not in name and not name.startswith(".") and " " not in name and name


def test_the_asset_waits_for_runs_on_their_way():
    from deeploc_airflow.announce import others_on_their_way

    done = {"r1": {"announce_faces": "success"}, "r2": {"announce_faces": "upstream_failed"}}
    assert others_on_their_way(0, {**done, "me": {"announce_faces": "running"}}, "me") == []
    assert others_on_their_way(0, {**done, "r5": {"announce_faces": "running"}}, "me") == []  # reached it
    assert others_on_their_way(0, {**done, "r3": {"announce_faces": None}}, "me") == ["r3"]
    assert others_on_their_way(0, {**done, "r4": {"announce_faces": "up_for_retry"}}, "me") == ["r4"]
    assert others_on_their_way(1, done, "me") == ["a queued run"]
