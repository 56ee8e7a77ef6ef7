"""One DAG shape, two targets: a branch picks the ``local`` lane or the ``aws`` lane at run time.

The local lane is one ``StageOperator`` per stage. The aws lane runs the same stages in the same order:
``plan`` (settings, code upload), then per block either a transient EMR cluster with a submit + wait
pair per stage and a teardown, or (for ``train``) a GPU instance, its marker sensor and a teardown.
Teardowns run whatever happened, and Airflow's setup/teardown marking keeps a failed stage from
looking green because its teardown succeeded.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.amazon.aws.operators.ec2 import EC2TerminateInstanceOperator
from airflow.sdk import TaskGroup, chain, task

from deeploc_airflow import aws
from deeploc_airflow.stage import StageOperator

GROUP = "aws"
PLAN = f"{GROUP}.plan"
# How often the sensors look; they defer instead where [operators] default_deferrable is on.
STEP_POKE = timedelta(minutes=1)
MARKER_POKE = timedelta(minutes=2)


def _plan_value(key: str) -> str:
    return "{{ ti.xcom_pull(task_ids='%s', key='%s') }}" % (PLAN, key)


def _emr_block(name: str, stages: list[str], options: dict, plan, outlets) -> tuple:
    cluster = aws.TransientCluster(task_id=f"create_{name}_cluster", job_flow_overrides=plan[f"job_flow_{name}"],
                                   given_cluster=plan["cluster_id"])
    tasks = [cluster]
    for stage in stages:
        submit = aws.StageStep(task_id=stage, stage=stage, options=options[stage], plan=plan,
                               job_flow_id=cluster.output)
        wait = aws.StageStepSensor(
            task_id=f"wait_{stage}", job_flow_id=cluster.output, mode="reschedule", poke_interval=STEP_POKE,
            step_id="{{ ti.xcom_pull(task_ids='%s.%s')[0] }}" % (GROUP, stage),
            timeout_hours="{{ ti.xcom_pull(task_ids='%s', key='settings')['step_timeout_hours'] }}" % PLAN,
            outlets=outlets if stage == stages[-1] else [])
        tasks += [submit, wait]
    chain(*tasks)
    teardown = aws.TerminateTransientCluster(task_id=f"terminate_{name}_cluster", job_flow_id=cluster.output,
                                             given_cluster=plan["cluster_id"])
    tasks[-1] >> teardown.as_teardown(setups=cluster)
    return tasks[0], tasks[-1]


def _training_block(options: dict, plan, outlets) -> tuple:
    launch = aws.TrainingInstance(task_id="train", options=options, plan=plan)
    wait = aws.TrainingMarkerSensor(
        task_id="wait_train", marker=_plan_value("marker"), mode="reschedule", poke_interval=MARKER_POKE,
        timeout_hours="{{ ti.xcom_pull(task_ids='%s', key='settings')['train_timeout_hours'] }}" % PLAN,
        outlets=outlets)
    launch >> wait
    wait >> EC2TerminateInstanceOperator(task_id="terminate_train_instance",
                                         instance_ids=launch.output).as_teardown(setups=launch)
    return launch, wait


def wire(stages: dict[str, dict], aws_blocks: list, run: str, outlets=(), local_overrides=None) -> None:
    """Build both lanes inside the current DAG.

    ``stages`` maps stage name to its (templated) options, in order. ``aws_blocks`` groups them for the
    aws target: ``("cluster_name", [stage, ...])`` for an EMR cluster, or ``"train"`` for the GPU
    instance. ``run`` names the run (templated). ``outlets`` go on each lane's last task.
    """
    names = list(stages)
    blocked = [s for b in aws_blocks for s in ([b] if isinstance(b, str) else b[1])]
    if blocked != names:
        raise ValueError(f"aws blocks {blocked} must list the stages {names} in order")
    local = [StageOperator(task_id=s, stage=s, options=o, outlets=outlets if s == names[-1] else [],
                           **(local_overrides or {}).get(s, {})) for s, o in stages.items()]
    chain(*local)

    with TaskGroup(GROUP, tooltip="the aws target: EMR steps and a GPU training instance"):
        clusters = {b[0]: b[1] for b in aws_blocks if not isinstance(b, str)}
        plan = task(aws.prepare, task_id="plan", multiple_outputs=True)(stages=names, clusters=clusters, run=run)
        previous = plan
        for block in aws_blocks:
            last_out = outlets if block is aws_blocks[-1] else []
            first, last = (_training_block(stages["train"], plan, last_out) if block == "train"
                           else _emr_block(block[0], block[1], stages, plan, last_out))
            previous >> first
            previous = last

    @task.branch(task_id="target")
    def choose(params=None):
        from deeploc_airflow.settings import resolve_target

        return local[0].task_id if resolve_target(params) == "local" else PLAN

    choose() >> [local[0], plan]
