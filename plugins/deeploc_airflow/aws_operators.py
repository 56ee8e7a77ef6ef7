"""The aws lane's operators, on top of the amazon provider's: a transient EMR cluster (or a given
one), a stage as one EMR step that is submitted and waited for as one retryable unit, and training
on a GPU instance that is launched and watched as one retryable unit. Teardowns remove what was made.

The run's first aws task makes its plan (``deeploc.plan``: sizes, hours, dollars, checks of the
account), keeps it in the lake under ``plans/`` and stops the run before anything is spent when a
check fails. A cluster waits for the vCPUs other clusters of the pipeline hold before it asks EMR.

Waits honour the configured hours in both modes: polling in the worker, or deferred to the triggerer
(``[operators] default_deferrable``, with a timeout), with the provider's EMR step trigger and
``TrainingTrigger``. A failure that a retry cannot fix (bad arguments, a missing input, a ledger that
does not add up, a dead cluster, a wait past its limit) fails at once (``AirflowFailException``);
anything else is retried by submitting the work again, never by looking again at the failed attempt.
Each try names what it submits (steps: stage, run and try; instances: the run's tag), cancels only
that, and a task marked failed from the UI (``on_kill``) cancels its step or terminates its instance.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import timedelta
from typing import Any, Sequence

from airflow.providers.amazon.aws.operators.ec2 import EC2CreateInstanceOperator, EC2TerminateInstanceOperator
from airflow.providers.amazon.aws.links.emr import EmrClusterLink, EmrLogsLink
from airflow.providers.amazon.aws.operators.emr import (EmrAddStepsOperator, EmrCreateJobFlowOperator,
                                                        EmrTerminateJobFlowOperator)
from airflow.providers.amazon.aws.triggers.emr import EmrAddStepsTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from deeploc_airflow import aws_package, capacity, sizing
from deeploc_airflow.argv import check_options, safe_run_name, stage_argv
from deeploc_airflow.links import ec2_console, links_for, OUTPUTS, s3_console, stage_links
from deeploc_airflow.training import first_event, TrainingTrigger

RUN_TAG = "deeploc:run"
DEAD = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")  # a cluster no step can run on


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

    from deeploc.storage.uris import split_s3

    bucket, key = split_s3(uri)
    hook = S3Hook()
    return json.loads(hook.read_key(key, bucket)) if hook.check_for_key(key, bucket) else None


def plan(clusters: dict[str, list[str]], stages: list[str], params: dict | None = None, dag=None, run_id=None,
         dag_run=None) -> dict:
    """Resolve the aws settings, check the locations, size and check the run (``deeploc.plan``; kept under
    ``plans/``; a failed check stops the run here), upload the code package, and return what every later
    aws task reads (pushed as separate XComs: ``plan["wheel"]`` etc.)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from deeploc import registry
    from deeploc.storage.uris import split_s3
    from deeploc_airflow.settings import resolve, resolve_aws, resolve_budget

    cfg = resolve_aws(params)
    lake = resolve("lake", params).rstrip("/")
    for name in sorted({s for stage in stages for s in registry.get(stage).settings} & {"lake", "bucket", "metadata"}):
        if not resolve(name, params).startswith("s3://"):
            raise AirflowFailException(f"the aws target needs an s3:// {name}: set the param, the Variable "
                                       f"deeploc_{name} or the env DEEPLOC_{name.upper()} (got {resolve(name, params)!r})")
    label = safe_run_name(f"{dag.dag_id if dag else 'deeploc'}-{run_id or 'run'}")
    unattended = str(getattr(dag_run, "run_type", "")).lower().split(".")[-1] in ("scheduled", "asset_triggered")
    sized = sizing.make(dag.dag_id if dag else "deeploc_model", cfg, params or {}, dag_run,
                        resolve_budget() if unattended else None)
    wheels = aws_package.wheelhouse_uri(lake, cfg["code_prefix"], aws_package.constraints())
    build = f"./dev wheelhouse --lake {lake}" + \
        (f" --code-prefix {cfg['code_prefix']}" if cfg["code_prefix"] else "")
    extras = {aws_package.node_extra(members) for members in clusters.values()} | \
        ({"gpu"} if "train" in stages else set())
    s3 = S3Hook()
    sizing.add_check(sized, wheelhouse_check(s3, wheels, extras, build))
    where = sizing.keep(sized, lake, dag.dag_id if dag else "deeploc", safe_run_name(run_id or "run"))
    print(sizing.text(sized))  # the task's log shows the plan as a table
    if not sized["ok"]:
        failed = "; ".join(f"{c['name']}: {c['message']}" for c in sized["checks"] if not c["ok"])
        raise AirflowFailException(f"the plan refuses this run ({where}): {failed}")
    blobs = aws_package.files()
    bucket, prefix = split_s3((cfg["code_prefix"] or f"{lake}/_code").rstrip("/") + f"/{aws_package.digest(blobs)}")
    for fname, data in blobs.items():
        s3.load_bytes(data, f"{prefix}/{fname}", bucket, replace=True)
    uri = lambda fname: f"s3://{bucket}/{prefix}/{fname}"  # noqa: E731
    wheel = next(f for f in blobs if f.endswith(".whl"))
    out = {"lake": lake, "wheel": uri(wheel), "wheels": wheels,
           "node_setup": uri("node_setup.sh"), "step_main": uri("step_main.py"), "python": cfg["python"],
           "cluster_id": cfg["cluster_id"], "settings": cfg, "label": label, "plan": where,
           "quotas": {k: v["vcpus"] for k, v in sized["vcpus"]["quotas"].items()}}
    for name, members in clusters.items():
        out[f"job_flow_{name}"] = aws_package.job_flow(name, members, cfg, out, label)
    return out


def wheelhouse_check(s3, wheels: str, extras: set[str], build: str) -> dict:
    """The nodes install from the wheelhouse only: every extra this run's nodes need must be there."""
    from deeploc.storage.uris import split_s3

    bucket, key = split_s3(wheels)
    missing = sorted(e for e in extras if not s3.check_for_key(f"{key}/{e}/READY", bucket))
    return {"name": "wheelhouse", "ok": not missing,
            "message": f"the nodes' wheels for this lock are at {wheels}" if not missing else
            f"no wheelhouse for {', '.join(missing)} at {wheels}: build it once per lock with `{build}` (docs/aws.md)"}


def emr_cluster(name: str, stages: list[str], options: dict[str, dict], plan, step_limit) -> tuple:
    """The tasks of one transient cluster: (create it, one step per stage, terminate it)."""
    create = TransientCluster(task_id=f"create_{name}_cluster", job_flow_overrides=plan[f"job_flow_{name}"],
                              given_cluster=plan["cluster_id"], plan=plan)
    steps = [EmrStage(task_id=s, stage=s, options=options[s], plan=plan, job_flow_id=create.output,
                      execution_timeout=step_limit) for s in stages]
    end = TerminateTransientCluster(task_id=f"terminate_{name}_cluster", job_flow_id=create.output,
                                    given_cluster=plan["cluster_id"])
    return create, steps, end


class TransientCluster(EmrCreateJobFlowOperator):
    """Create the run's cluster once the account has the vCPUs for it, or hand on ``given_cluster`` (an
    existing one) untouched. Other clusters of the pipeline (a backfill's other runs) hold vCPUs too:
    this one waits, up to ``capacity_wait_hours``, until what they hold and what it needs fit the quotas
    the plan read, rather than ask EMR for a cluster it cannot start."""

    template_fields: Sequence[str] = (*EmrCreateJobFlowOperator.template_fields, "given_cluster", "plan")

    def __init__(self, *, given_cluster: str, plan: dict, **kwargs):
        super().__init__(emr_conn_id=None, wait_for_completion=False, deferrable=False, **kwargs)
        self.given_cluster, self.plan = given_cluster, plan

    def execute(self, context):
        if self.given_cluster:
            self.log.info("using the given cluster %s; it will not be terminated", self.given_cluster)
            return self.given_cluster
        cfg = self.plan["settings"]
        need = capacity.of_job_flow(self.job_flow_overrides)
        deadline = time.monotonic() + float(cfg["capacity_wait_hours"]) * 3600
        while True:
            held = capacity.held(self.hook.conn)
            if all(held[k] + need[k] <= self.plan["quotas"][k] for k in need):
                return super().execute(context)
            if time.monotonic() > deadline:
                raise AirflowException(f"no room for this cluster ({need} vCPUs) within the quotas {self.plan['quotas']} "
                                       f"after {cfg['capacity_wait_hours']} h: other clusters hold {held}")
            self.log.info("waiting for vCPUs: other clusters hold %s, this one needs %s, quotas %s", held, need,
                          self.plan["quotas"])
            time.sleep(float(cfg["poll_seconds"]))


class TerminateTransientCluster(EmrTerminateJobFlowOperator):
    """Teardown: terminate the cluster this run created; a given cluster is left running."""

    template_fields: Sequence[str] = (*EmrTerminateJobFlowOperator.template_fields, "given_cluster")

    def __init__(self, *, given_cluster: str, **kwargs):
        super().__init__(deferrable=False, **kwargs)
        self.given_cluster = given_cluster

    def execute(self, context):
        if self.given_cluster:  # succeeds rather than skips: the next cluster's task waits on this one
            self.log.info("cluster %s was given, not created: left running", self.given_cluster)
            return None
        return super().execute(context)


class EmrStage(EmrAddStepsOperator):
    """``deeploc <stage> ...`` as one EMR step: submitted, then waited for up to ``step_timeout_hours``.
    Each try submits a step named by stage, run and try; the step's result file says whether a failure
    deserves another. A cluster that died (its state and reason say so) fails the task at once."""

    template_fields: Sequence[str] = (*EmrAddStepsOperator.template_fields, "options", "plan")
    ui_color = "#fbe8a6"
    STEP_LOGS = "EMR step logs"

    def __init__(self, *, stage: str, options: dict[str, Any], plan: dict, **kwargs):
        super().__init__(wait_for_completion=True, **kwargs)
        self.stage, self.options, self.plan = stage, dict(options), plan
        self.step_ids: list[str] = []
        check_options(stage, self.options)
        self.operator_extra_links = (*EmrAddStepsOperator.operator_extra_links,
                                     *links_for([self.STEP_LOGS, *([OUTPUTS[stage][0]] if stage in OUTPUTS else [])]))

    def _name(self, context) -> str:
        return aws_package.step_name(self.stage, self.plan["label"], context["ti"].try_number)

    def _set_links(self, context) -> None:
        """The cluster and its logs (the provider's links), the step's own logs (EMR copies them to the log
        URI a few minutes after it ends) and its outputs."""
        cfg, region = self.plan["settings"], self.hook.conn_region_name
        logs = (cfg["log_uri"] or f"{self.plan['lake']}/_logs/emr").rstrip("/")
        for link in (EmrClusterLink, EmrLogsLink):
            link.persist(context=context, operator=self, region_name=region, aws_partition=self.hook.conn_partition,
                         job_flow_id=self.job_flow_id, log_uri=logs.removeprefix("s3://"))
        self.result_links = stage_links(checked_argv(self.stage, self.options, context.get("params") or {}))
        if self.step_ids:
            self.result_links[self.STEP_LOGS] = s3_console(f"{logs}/{self.job_flow_id}/steps/{self.step_ids[0]}/", region)

    def _mine(self, context) -> list[str]:
        """This try's steps, found by name (a resumed deferral has no memory of them)."""
        name = self._name(context)
        return [s["Id"] for s in self.hook.conn.list_steps(ClusterId=self.job_flow_id)["Steps"] if s["Name"] == name]

    def _cluster_alive(self) -> None:
        """Fail at once, with EMR's reason, when the cluster is gone: no try can run on it."""
        status = self.hook.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]["Status"]
        if status["State"] in DEAD:
            why = status.get("StateChangeReason", {})
            raise AirflowFailException(f"{self.stage}: cluster {self.job_flow_id} is {status['State']} "
                                       f"({why.get('Code', 'no code')}: {why.get('Message', 'no reason given')}); "
                                       "a retry cannot run on it: rerun the DAG run")

    def execute(self, context):
        cfg = self.plan["settings"]
        argv = checked_argv(self.stage, self.options, context.get("params") or {})
        self.result = f"{_marker(self.plan, context, self.stage)}.json"
        self._cluster_alive()
        step = aws_package.emr_step(argv, self.plan, self.result, self._name(context))
        self.log.info("step %s: %s", step["Name"], " ".join(step["HadoopJarStep"]["Args"]))
        self.step_ids = self.hook.conn.add_job_flow_steps(JobFlowId=self.job_flow_id, Steps=[step])["StepIds"]
        self._set_links(context)
        delay = int(cfg["poll_seconds"])
        attempts = max(1, math.ceil(float(cfg["step_timeout_hours"]) * 3600 / delay))
        if self.deferrable:
            self.defer(trigger=EmrAddStepsTrigger(job_flow_id=self.job_flow_id, step_ids=self.step_ids,
                                                  waiter_delay=delay, waiter_max_attempts=attempts,
                                                  aws_conn_id=self.aws_conn_id, region_name=self.region_name),
                       method_name="execute_complete",
                       timeout=timedelta(hours=float(cfg["step_timeout_hours"])) + timedelta(seconds=2 * delay))
        try:
            self.hook.conn.get_waiter("step_complete").wait(
                ClusterId=self.job_flow_id, StepId=self.step_ids[0],
                WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
        except Exception as exc:  # noqa: BLE001 - a failed step and a wait that ran out both end here
            self._failed(context, str(exc))
        return self.step_ids

    def execute_complete(self, context, event: dict[str, Any] | None = None):
        self.step_ids = self._mine(context)
        self._set_links(context)
        if event and event.get("status") == "success":
            return self.step_ids
        self.result = f"{_marker(self.plan, context, self.stage)}.json"
        self._failed(context, str(event))

    def on_kill(self):
        """Marked failed or stopped from the UI: the step this try submitted stops too."""
        self._cancel(self.step_ids)

    def _cancel(self, step_ids: list[str]) -> list[str]:
        running = [s["Id"] for s in self.hook.conn.list_steps(ClusterId=self.job_flow_id)["Steps"]
                   if s["Id"] in step_ids and s["Status"]["State"] in ("PENDING", "RUNNING")]
        if running:
            self.hook.conn.cancel_steps(ClusterId=self.job_flow_id, StepIds=running)
            self.log.info("cancelled step(s) %s", running)
        return running

    def _failed(self, context, why: str):
        """A step ended badly or the wait gave up: cancel what this try still runs, then fail or retry."""
        self._cluster_alive()
        if self._cancel(self.step_ids or self._mine(context)):  # the wait ran out; the step would go on alone
            raise AirflowFailException(f"{self.stage}: the step ran longer than step_timeout_hours; cancelled")
        result = _read_result(self.result)
        if result and result.get("terminal"):
            raise AirflowFailException(f"{self.stage} failed, and a retry would fail the same way: {result['error']}")
        detail = result["error"] if result else "the step left no result (a lost node, or Spark itself failed)"
        raise AirflowException(f"{self.stage} step failed ({detail}; {why[:300]}); the next try submits it again")


class TrainOnInstance(EC2CreateInstanceOperator):
    """Launch a GPU instance whose user data runs ``deeploc train ...``, and wait for its result or its
    end. A lost instance fails this try; the next try first terminates what an earlier try of the run
    left running, then launches another, which resumes from the last checkpoint in the lake. The
    instance stops itself at the configured hours (plus a margin)."""

    template_fields: Sequence[str] = (*EC2CreateInstanceOperator.template_fields, "options", "plan")
    ui_color = "#fbe8a6"
    stage = "train"
    LOG, INSTANCE = "Training log", "Training instance"
    operator_extra_links = links_for([LOG, INSTANCE])

    def __init__(self, *, options: dict, plan: dict, deferrable: bool | None = None, **kwargs):
        super().__init__(image_id="", wait_for_completion=False, **kwargs)
        self.options, self.plan = dict(options), plan
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.instance_id: str | None = None
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
        left = terminate_tagged(self.hook.conn, self.plan["label"])
        if left:
            self.log.info("terminated instance(s) %s left running by an earlier try of this run", left)
        root = self.hook.conn.describe_images(ImageIds=[cfg["train_ami"]])["Images"][0]["RootDeviceName"]
        self.image_id = cfg["train_ami"]
        self.config = {
            "InstanceType": cfg["train_instance_type"],
            "IamInstanceProfile": {"Name": cfg["train_instance_profile"]},
            "UserData": aws_package.training_user_data(self.plan, argv, self.result, f"{marker}.log", hours),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},  # IMDSv2: the spot notice
            "BlockDeviceMappings": [{"DeviceName": root, "Ebs": {"VolumeSize": int(cfg["train_volume_gb"]),
                                                                 "VolumeType": "gp3", "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": f"deeploc-train-{self.plan['label']}"[:255]},
                {"Key": RUN_TAG, "Value": self.plan["label"][:255]}]}],
            **({"InstanceMarketOptions": {"MarketType": "spot"}} if cfg["train_spot"] else {}),
            **({"SubnetId": cfg["train_subnet"] or cfg["subnet"]} if cfg["train_subnet"] or cfg["subnet"] else {}),
        }
        self.log.info("training: deeploc %s (result: %s)", " ".join(argv), self.result)
        (self.instance_id,) = super().execute(context)
        self._set_links(context, self.instance_id)
        trigger = TrainingTrigger(self.instance_id, self.result, time.time() + hours * 3600, float(cfg["poll_seconds"]),
                                  self.aws_conn_id, self.region_name)
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete",
                       timeout=timedelta(hours=hours, seconds=2 * cfg["poll_seconds"]))
        return self._finish(asyncio.run(first_event(trigger)))  # not deferred: the same polling, in this worker

    def execute_complete(self, context, event: dict[str, Any] | None = None):
        event = event or {"status": "retry", "message": "no event"}
        if event.get("instance_id"):
            self._set_links(context, event["instance_id"])
        return self._finish(event)

    def on_kill(self):
        """Marked failed or stopped from the UI: the instance this try launched goes too."""
        if self.instance_id:
            self.hook.terminate_instances(instance_ids=[self.instance_id])

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


def terminate_tagged(ec2, label: str) -> list[str]:
    """Terminate every instance of the run ``label`` still alive; their ids."""
    found = ec2.describe_instances(Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [label]},
                                            {"Name": "instance-state-name",
                                             "Values": ["pending", "running", "stopping", "stopped"]}])
    ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    return ids


class TerminateTrainingInstances(EC2TerminateInstanceOperator):
    """Teardown: terminate every instance this run launched (one per try), found by its run tag."""

    template_fields: Sequence[str] = (*EC2TerminateInstanceOperator.template_fields, "run_label")

    def __init__(self, *, run_label: str, **kwargs):
        super().__init__(instance_ids=[], **kwargs)
        self.run_label = run_label

    def execute(self, context):
        ids = terminate_tagged(self.hook.conn, self.run_label)
        self.log.info("instances of run %s terminated: %s", self.run_label, ids or "none was left")
