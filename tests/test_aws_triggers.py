"""The deferred waits, run for real: the amazon provider's EMR step trigger (as ``EmrStage`` defers to
it, with the configured hours) and ``TrainingTrigger``, polling a moto server over HTTP with
aiobotocore, as the triggerer would. The test plays the cluster and the instance from moto's state.
And what a task marked failed from the UI does (``on_kill``): its instance goes (on moto), its step is
cancelled and no other (botocore's Stubber: moto has no CancelSteps)."""

import asyncio
import json
import time
from datetime import timedelta
from types import SimpleNamespace

import boto3
import pytest

pytestmark = pytest.mark.slow  # each test drives a trigger against a moto server: seconds, not milliseconds


@pytest.fixture(scope="module")
def server(moto_lake_bucket):
    return moto_lake_bucket




async def _first_event(trigger, act=None, after=1.0):
    """The trigger's first event; ``act`` runs ``after`` seconds in, while it polls."""
    async def later():
        await asyncio.sleep(after)
        act()

    task = asyncio.ensure_future(later()) if act else None
    async for event in trigger.run():
        if task:
            await task
        return event.payload


def _cluster_with_step():
    emr = boto3.client("emr")
    cluster = emr.run_job_flow(Name="c", ReleaseLabel="emr-spark-8.0.0", JobFlowRole="r", ServiceRole="r",
                               Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                                          "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
    step = emr.add_job_flow_steps(JobFlowId=cluster, Steps=[{"Name": "deeploc faces", "ActionOnFailure": "CONTINUE",
                                                             "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["x"]}}])
    return cluster, step["StepIds"][0]


def _set_step(cluster, step_id, state):
    """As the cluster would (moto never runs a step). The server keeps it in whichever region it inferred."""
    from moto.backends import get_backend

    (found,) = [b.clusters[cluster] for account in get_backend("emr").values() for b in account.values()
                if cluster in b.clusters]
    for step in found.steps:
        if step.id == step_id:
            step.state = state


def test_emr_stage_defers_with_the_configured_hours(server):
    from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger
    from airflow.sdk.exceptions import TaskDeferred

    from deeploc_airflow.aws_operators import EmrStage
    from deeploc_airflow.settings import AWS_DEFAULTS

    cluster, _ = _cluster_with_step()
    plan = {"lake": "s3://lake/root", "step_main": "s3://lake/code/step_main.py", "label": "d-r",
            "settings": {**AWS_DEFAULTS, "poll_seconds": 30, "step_timeout_hours": 7}}
    op = EmrStage(task_id="faces", stage="faces", options={"start": "2010-01-01", "end": "2011-01-01"}, plan=plan,
                  job_flow_id=cluster, deferrable=True, aws_conn_id=None)
    ti = SimpleNamespace(dag_id="d", run_id="r", try_number=1, xcom_push=lambda **kw: None)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"params": {"lake": "s3://lake/root", "bucket": "s3://images"}, "ti": ti})
    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrAddStepsTrigger)
    assert trigger.waiter_delay * trigger.attempts == 7 * 3600  # 7 hours, not the provider's 30 minutes
    # The deferral ends by itself a little after the waiter would (a triggerer that lost it cannot hang it).
    assert deferred.value.timeout == timedelta(hours=7, seconds=60)
    assert op.step_ids and boto3.client("emr").describe_step(ClusterId=cluster, StepId=op.step_ids[0])["Step"][
        "Name"] == "deeploc faces d-r try1"


def test_a_step_marked_failed_in_the_ui_cancels_its_own_step_only():
    from botocore.stub import Stubber

    from deeploc_airflow.aws_operators import EmrStage
    from deeploc_airflow.settings import AWS_DEFAULTS

    op = EmrStage(task_id="faces", stage="faces", options={"start": "2010-01-01", "end": "2011-01-01"},
                  plan={"settings": AWS_DEFAULTS}, job_flow_id="j-1", aws_conn_id=None, region_name="us-west-2")
    op.step_ids = ["s-MINE"]
    steps = [{"Id": i, "Name": n, "Status": {"State": "RUNNING"}} for i, n in
             (("s-OTHER", "deeploc faces another-run try1"), ("s-MINE", "deeploc faces d-r try1"))]
    with Stubber(op.hook.conn) as stub:
        stub.add_response("list_steps", {"Steps": steps}, {"ClusterId": "j-1"})
        stub.add_response("cancel_steps", {"CancelStepsInfoList": [{"StepId": "s-MINE", "Status": "SUBMITTED"}]},
                          {"ClusterId": "j-1", "StepIds": ["s-MINE"]})
        op.on_kill()
        stub.assert_no_pending_responses()


def test_training_marked_failed_in_the_ui_terminates_its_instance(server):
    from deeploc_airflow.aws_operators import TrainOnInstance
    from deeploc_airflow.settings import AWS_DEFAULTS

    mine, other = _instance(), _instance()
    op = TrainOnInstance(task_id="train", options={"run": "m1"}, plan={"settings": AWS_DEFAULTS}, aws_conn_id=None,
                         region_name="us-west-2")
    op.instance_id = mine
    op.on_kill()
    found = boto3.client("ec2").describe_instances(InstanceIds=[mine, other])["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}
    assert states == {mine: "terminated", other: "running"}


@pytest.mark.parametrize("state,status", [("COMPLETED", "success"), ("FAILED", "error")])
def test_the_emr_step_trigger_follows_the_step(server, state, status):
    from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger

    cluster, step = _cluster_with_step()
    _set_step(cluster, step, "RUNNING")
    trigger = EmrAddStepsTrigger(job_flow_id=cluster, step_ids=[step], waiter_delay=1, waiter_max_attempts=30,
                                 aws_conn_id=None)
    event = asyncio.run(_first_event(trigger, lambda: _set_step(cluster, step, state), after=2.5))
    assert event["status"] == status


def _instance():
    ec2 = boto3.client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    return ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]


def test_training_trigger_sees_the_result(server):
    from deeploc_airflow.training import TrainingTrigger

    instance = _instance()
    put = lambda: boto3.client("s3").put_object(Bucket="lake", Key="m/try-1.json", Body=json.dumps({"ok": True}))  # noqa: E731
    trigger = TrainingTrigger(instance, "s3://lake/m/try-1.json", time.time() + 60, 0.5, aws_conn_id=None)
    assert asyncio.run(_first_event(trigger, put, after=1.5))["status"] == "success"
    assert TrainingTrigger(*trigger.serialize()[1].values()).serialize() == trigger.serialize()


def test_training_trigger_sees_a_lost_instance_and_a_deadline(server):
    from deeploc_airflow.training import TrainingTrigger

    instance = _instance()
    kill = lambda: boto3.client("ec2").terminate_instances(InstanceIds=[instance])  # noqa: E731
    lost = TrainingTrigger(instance, "s3://lake/m/none.json", time.time() + 60, 0.5, aws_conn_id=None)
    event = asyncio.run(_first_event(lost, kill, after=1.5))
    assert event["status"] == "retry" and "terminated" in event["message"]
    running = TrainingTrigger(_instance(), "s3://lake/m/none.json", time.time() + 1.0, 0.5, aws_conn_id=None)
    assert asyncio.run(_first_event(running))["status"] == "timeout"


def test_training_trigger_waits_for_an_instance_ec2_does_not_list_yet(server):
    from deeploc_airflow.training import TrainingTrigger

    unlisted = TrainingTrigger("i-0123456789abcdef0", "s3://lake/m/none.json",
                               time.time() + 1.5, 0.5, aws_conn_id=None)
    event = asyncio.run(_first_event(unlisted))
    assert event["status"] == "timeout"  # polled as pending until its deadline, never failed on NotFound


def test_outcome_rules():
    from deeploc_airflow.training import outcome

    assert outcome({"ok": True}, "terminated")[0] == "success"  # wrote its result, then powered off
    assert outcome({"ok": False, "terminal": True, "error": "x"}, "running") == ("fail", "x")
    assert outcome({"ok": False, "terminal": False, "error": "y"}, "running") == ("retry", "y")
    assert outcome(None, "running")[0] == "running" and outcome(None, "pending")[0] == "running"
    assert outcome(None, "shutting-down", "Server.SpotInstanceTermination")[0] == "retry"
