"""The aws lane's operators, on top of the amazon provider's: a transient EMR cluster (or a given
one), a stage as one EMR step that is submitted and waited for as one retryable unit, and training
on a GPU instance that is launched and watched as one retryable unit. Teardowns remove what was made.

Waits honour the configured hours in both modes: polling in the worker, or deferred to the triggerer
(``[operators] default_deferrable``), with the provider's EMR step trigger and ``TrainingTrigger``.
A failure that a retry cannot fix (bad arguments, a missing input, a ledger that does not add up, a
wait past its limit) fails at once (``AirflowFailException``); anything else is retried by submitting
the work again, never by looking again at the failed attempt.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Sequence

from airflow.providers.amazon.aws.operators.ec2 import EC2CreateInstanceOperator, EC2TerminateInstanceOperator
from airflow.providers.amazon.aws.operators.emr import (EmrAddStepsOperator, EmrCreateJobFlowOperator,
                                                        EmrTerminateJobFlowOperator)
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from deeploc_airflow import aws_package
from deeploc_airflow.argv import check_options, safe_run_name, stage_argv
from deeploc_airflow.links import OUTPUTS, ec2_console, links_for, s3_console, stage_links
from deeploc_airflow.training import TrainingTrigger, outcome

RUN_TAG = "deeploc:run"


def _default_deferrable() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def checked_argv(stage: str, options: dict, params: dict) -> list[str]:
    """The stage's argument list, refused at once (no retries) when the command line would refuse it."""
    from deeploc.cli import parser

    argv = stage_argv(stage, options, params)
    try:
        parser().parse_args(argv)
    except SystemExit:
        raise AirflowFailException(f"deeploc refuses these arguments: {' '.join(argv)}") from None
    return argv


def _marker(plan: dict, context, name: str) -> str:
    """Where this try of this task leaves its result: unique per DAG run, task and try."""
    ti = context["ti"]
    return f"{plan['lake']}/_markers/{safe_run_name(ti.dag_id)}/{safe_run_name(ti.run_id)}/{name}-try{ti.try_number}"


def _read_result(uri: str) -> dict | None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from deeploc.uris import split_s3

    bucket, key = split_s3(uri)
    hook = S3Hook()
    return json.loads(hook.read_key(key, bucket)) if hook.check_for_key(key, bucket) else None


def plan(clusters: dict[str, list[str]], stages: list[str], params: dict | None = None, dag=None, run_id=None) -> dict:
    """Resolve the aws settings, check the locations, upload the code package, and return the plan every
    later aws task reads (pushed as separate XComs: ``plan["wheel"]`` etc.)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from deeploc import registry
    from deeploc.uris import split_s3
    from deeploc_airflow.settings import resolve, resolve_aws

    cfg = resolve_aws(params)
    lake = resolve("lake", params).rstrip("/")
    for name in sorted({s for stage in stages for s in registry.get(stage).settings} & {"lake", "bucket", "metadata"}):
        if not resolve(name, params).startswith("s3://"):
            raise AirflowFailException(f"the aws target needs an s3:// {name}: set the param, the Variable "
                                       f"deeploc_{name} or the env DEEPLOC_{name.upper()} (got {resolve(name, params)!r})")
    blobs = aws_package.files()
    bucket, prefix = split_s3((cfg["code_prefix"] or f"{lake}/_code").rstrip("/") + f"/{aws_package.digest(blobs)}")
    s3 = S3Hook()
    for fname, data in blobs.items():
        s3.load_bytes(data, f"{prefix}/{fname}", bucket, replace=True)
    uri = lambda fname: f"s3://{bucket}/{prefix}/{fname}"  # noqa: E731
    wheel = next(f for f in blobs if f.endswith(".whl"))
    label = safe_run_name(f"{dag.dag_id if dag else 'deeploc'}-{run_id or 'run'}")
    out = {"lake": lake, "wheel": uri(wheel), "constraints": uri("constraints.txt"), "node_setup": uri("node_setup.sh"),
           "step_main": uri("step_main.py"), "python": cfg["python"], "cluster_id": cfg["cluster_id"],
           "settings": cfg, "label": label}
    for name, members in clusters.items():
        out[f"job_flow_{name}"] = aws_package.job_flow(name, members, cfg, out, label)
    return out


def emr_cluster(name: str, stages: list[str], options: dict[str, dict], plan, step_limit) -> tuple:
    """The tasks of one transient cluster: (create it, one step per stage, terminate it)."""
    create = TransientCluster(task_id=f"create_{name}_cluster", job_flow_overrides=plan[f"job_flow_{name}"],
                              given_cluster=plan["cluster_id"])
    steps = [EmrStage(task_id=s, stage=s, options=options[s], plan=plan, job_flow_id=create.output,
                      execution_timeout=step_limit) for s in stages]
    end = TerminateTransientCluster(task_id=f"terminate_{name}_cluster", job_flow_id=create.output,
                                    given_cluster=plan["cluster_id"])
    return create, steps, end


class TransientCluster(EmrCreateJobFlowOperator):
    """Create the run's cluster, or hand on ``given_cluster`` (an existing one) untouched."""

    template_fields: Sequence[str] = (*EmrCreateJobFlowOperator.template_fields, "given_cluster")

    def __init__(self, *, given_cluster: str, **kwargs):
        super().__init__(emr_conn_id=None, wait_for_completion=False, deferrable=False, **kwargs)
        self.given_cluster = given_cluster

    def execute(self, context):
        if self.given_cluster:
            self.log.info("using the given cluster %s; it will not be terminated", self.given_cluster)
            return self.given_cluster
        return super().execute(context)


class TerminateTransientCluster(EmrTerminateJobFlowOperator):
    """Teardown: terminate the cluster this run created; a given cluster is left running."""

    template_fields: Sequence[str] = (*EmrTerminateJobFlowOperator.template_fields, "given_cluster")

    def __init__(self, *, given_cluster: str, **kwargs):
        super().__init__(deferrable=False, **kwargs)
        self.given_cluster = given_cluster

    def execute(self, context):
        if self.given_cluster:
            raise AirflowSkipException(f"cluster {self.given_cluster} was given, not created: left running")
        return super().execute(context)


class EmrStage(EmrAddStepsOperator):
    """``deeploc <stage> ...`` as one EMR step: submitted, then waited for up to ``step_timeout_hours``.
    Each try submits a new step; the step's result file says whether a failure deserves another."""

    template_fields: Sequence[str] = (*EmrAddStepsOperator.template_fields, "options", "plan")
    ui_color = "#fbe8a6"
    STEP_LOGS = "EMR step logs"

    def __init__(self, *, stage: str, options: dict[str, Any], plan: dict, **kwargs):
        super().__init__(wait_for_completion=True, **kwargs)
        self.stage, self.options, self.plan = stage, dict(options), plan
        check_options(stage, self.options)
        self.operator_extra_links = (*EmrAddStepsOperator.operator_extra_links,
                                     *links_for([self.STEP_LOGS, *([OUTPUTS[stage][0]] if stage in OUTPUTS else [])]))

    def _set_links(self, context, step_id: str | None) -> None:
        """The step's own logs (EMR copies them to the log URI a few minutes after it ends) and its outputs."""
        logs = (self.plan["settings"]["log_uri"] or f"{self.plan['lake']}/_logs/emr").rstrip("/")
        self.result_links = stage_links(checked_argv(self.stage, self.options, context.get("params") or {}))
        if step_id:
            self.result_links[self.STEP_LOGS] = s3_console(f"{logs}/{self.job_flow_id}/steps/{step_id}/",
                                                           self.hook.conn_region_name)

    def _latest_step(self) -> str | None:
        steps = [s for s in self.hook.conn.list_steps(ClusterId=self.job_flow_id)["Steps"]
                 if s["Name"] == f"deeploc {self.stage}"]
        return steps[0]["Id"] if steps else None  # EMR lists the newest first

    def execute(self, context):
        cfg = self.plan["settings"]
        argv = checked_argv(self.stage, self.options, context.get("params") or {})
        self.result = f"{_marker(self.plan, context, self.stage)}.json"
        self.steps = [aws_package.emr_step(argv, self.plan, self.result)]
        self.waiter_delay = int(cfg["poll_seconds"])
        self.waiter_max_attempts = max(1, math.ceil(float(cfg["step_timeout_hours"]) * 3600 / self.waiter_delay))
        self.wait_for_completion = not self.deferrable
        self.log.info("step: %s", " ".join(self.steps[0]["HadoopJarStep"]["Args"]))
        try:
            step_ids = super().execute(context)
        except AirflowException as exc:
            if type(exc).__name__ in ("TaskDeferred", "AirflowFailException"):
                raise
            self._failed(context, str(exc))
        self._set_links(context, step_ids[0])
        return step_ids

    def execute_complete(self, context, event: dict[str, Any] | None = None):
        if event and event.get("status") == "success":
            self._set_links(context, (event.get("value") or [None])[0])
            return event.get("value")
        self.result = getattr(self, "result", None) or f"{_marker(self.plan, context, self.stage)}.json"
        self._failed(context, str(event))

    def _failed(self, context, why: str):
        """A step ended badly or the wait gave up: cancel what still runs, then fail or retry."""
        self._set_links(context, self._latest_step())
        step_ids = [s["Id"] for s in self.hook.conn.list_steps(ClusterId=self.job_flow_id)["Steps"]
                    if s["Name"] == f"deeploc {self.stage}" and s["Status"]["State"] in ("PENDING", "RUNNING")]
        if step_ids:  # the wait ran out: the step would otherwise go on without anyone waiting for it
            self.hook.conn.cancel_steps(ClusterId=self.job_flow_id, StepIds=step_ids)
            raise AirflowFailException(f"{self.stage}: the step ran longer than step_timeout_hours; cancelled")
        result = _read_result(self.result)
        if result and result.get("terminal"):
            raise AirflowFailException(f"{self.stage} failed, and a retry would fail the same way: {result['error']}")
        detail = result["error"] if result else "the step left no result (a lost node, or Spark itself failed)"
        raise AirflowException(f"{self.stage} step failed ({detail}; {why[:300]}); the next try submits it again")


class TrainOnInstance(EC2CreateInstanceOperator):
    """Launch a GPU instance whose user data runs ``deeploc train ...``, and wait for its result or its
    end. A lost instance fails this try; the next try launches another, which resumes from the last
    checkpoint in the lake. The instance stops itself at the configured hours (plus a margin)."""

    template_fields: Sequence[str] = (*EC2CreateInstanceOperator.template_fields, "options", "plan")
    ui_color = "#fbe8a6"
    stage = "train"
    LOG, INSTANCE = "Training log", "Training instance"
    operator_extra_links = links_for([LOG, INSTANCE])

    def __init__(self, *, options: dict, plan: dict, deferrable: bool | None = None, **kwargs):
        super().__init__(image_id="", wait_for_completion=False, **kwargs)
        self.options, self.plan = dict(options), plan
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        check_options(self.stage, self.options)

    def _set_links(self, context, instance_id: str) -> None:
        """This try's log in the lake (synced while it runs) and its instance in the EC2 console."""
        self.result_links = {self.LOG: s3_console(f"{_marker(self.plan, context, 'train')}.log"),
                             self.INSTANCE: ec2_console(instance_id, self.hook.conn_region_name)}

    def execute(self, context):
        cfg = self.plan["settings"]
        if not cfg["train_ami"]:
            raise AirflowFailException("the aws target needs train_ami (a GPU AMI): set the param or Variable deeploc_aws")
        argv = checked_argv(self.stage, self.options, context.get("params") or {})
        marker = _marker(self.plan, context, "train")
        self.result, hours = f"{marker}.json", float(cfg["train_timeout_hours"])
        root = self.hook.conn.describe_images(ImageIds=[cfg["train_ami"]])["Images"][0]["RootDeviceName"]
        self.image_id = cfg["train_ami"]
        self.config = {
            "InstanceType": cfg["train_instance_type"],
            "IamInstanceProfile": {"Name": cfg["train_instance_profile"]},
            "UserData": aws_package.training_user_data(self.plan, argv, self.result, f"{marker}.log", hours),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "BlockDeviceMappings": [{"DeviceName": root, "Ebs": {"VolumeSize": int(cfg["train_volume_gb"]),
                                                                 "VolumeType": "gp3", "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": f"deeploc-train-{self.plan['label']}"[:255]},
                {"Key": RUN_TAG, "Value": self.plan["label"][:255]}]}],
            **({"InstanceMarketOptions": {"MarketType": "spot"}} if cfg["train_spot"] else {}),
            **({"SubnetId": cfg["train_subnet"] or cfg["subnet"]} if cfg["train_subnet"] or cfg["subnet"] else {}),
        }
        self.log.info("training: deeploc %s (result: %s)", " ".join(argv), self.result)
        (instance_id,) = super().execute(context)
        self._set_links(context, instance_id)
        deadline = time.time() + hours * 3600
        if self.deferrable:
            self.defer(trigger=TrainingTrigger(instance_id, self.result, deadline, float(cfg["poll_seconds"]),
                                               self.aws_conn_id, self.region_name),
                       method_name="execute_complete")
        while True:
            found = self.hook.conn.describe_instances(InstanceIds=[instance_id])["Reservations"]
            inst = found[0]["Instances"][0] if found else {}
            verdict, message = outcome(_read_result(self.result), inst.get("State", {}).get("Name"),
                                       inst.get("StateReason", {}).get("Message", ""))
            if verdict != "running" or time.time() >= deadline:
                return self._finish({"status": verdict if verdict != "running" else "timeout", "message": message,
                                     "instance_id": instance_id})
            time.sleep(float(cfg["poll_seconds"]))

    def execute_complete(self, context, event: dict[str, Any] | None = None):
        event = event or {"status": "retry", "message": "no event"}
        if event.get("instance_id"):
            self._set_links(context, event["instance_id"])
        return self._finish(event)

    def _finish(self, event: dict):
        status, message = event.get("status"), event.get("message")
        if status == "success":
            return event["instance_id"]
        self.hook.terminate_instances(instance_ids=[event["instance_id"]])  # a failed try leaves nothing running
        if status == "timeout":
            raise AirflowFailException(f"training ran past train_timeout_hours; instance {event['instance_id']} terminated")
        if status == "fail":
            raise AirflowFailException(f"training failed, and a retry would fail the same way: {message}")
        raise AirflowException(f"training did not finish ({message}); the next try launches a new instance "
                               "that resumes from the last checkpoint")


class TerminateTrainingInstances(EC2TerminateInstanceOperator):
    """Teardown: terminate every instance this run launched (one per try), found by its run tag."""

    template_fields: Sequence[str] = (*EC2TerminateInstanceOperator.template_fields, "run_label")

    def __init__(self, *, run_label: str, **kwargs):
        super().__init__(instance_ids=[], **kwargs)
        self.run_label = run_label

    def execute(self, context):
        found = self.hook.conn.describe_instances(Filters=[
            {"Name": f"tag:{RUN_TAG}", "Values": [self.run_label]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        self.instance_ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
        if not self.instance_ids:
            self.log.info("no instance of run %s is left", self.run_label)
            return
        return super().execute(context)
