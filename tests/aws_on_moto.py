"""Run both DAGs on the aws target against moto, in this process, and print what happened as JSON.

Used by ``test_aws_target.py`` in a subprocess (a fresh Airflow home per scenario). moto never runs a
step or boots an instance, so this script plays their part, as the real ones would: each EMR step is
set to COMPLETED or FAILED when it is added (a failed step leaves its result file, see
``deeploc.step``), and the training instance's user data is read at launch and its result written
(or the instance is terminated without one, as a reclaimed spot instance is).

    python tests/aws_on_moto.py OUT.json [--fail-once STAGE] [--fail-terminal STAGE] [--fail-always STAGE]
                                         [--lose-instance] [--fail-training] [--cluster-id]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

LAKE, IMAGES, META = "s3://deeploc-lake/lake", "s3://deeploc-images", "s3://deeploc-meta/yfcc100m_*.bz2"


def _put(account_id: str, uri: str, body: bytes) -> None:
    from moto.s3.models import s3_backends

    bucket, key = uri[5:].split("/", 1)
    s3_backends[account_id]["aws"].put_object(bucket, key, body)


def patch_moto(a) -> None:
    from moto.ec2.models.instances import InstanceBackend
    from moto.emr.models import ElasticMapReduceBackend

    add_steps, submitted = ElasticMapReduceBackend.add_job_flow_steps, Counter()

    def add_and_settle(self, job_flow_id, steps):
        added = add_steps(self, job_flow_id, steps)
        for step in added:
            result, stage = step.args[4], step.args[5]
            submitted[stage] += 1
            fails = stage in (a.fail_always, a.fail_terminal) or (stage == a.fail_once and submitted[stage] == 1)
            step.state = "FAILED" if fails else "COMPLETED"
            if fails and stage != a.fail_always:  # a step that ran and said why; fail_always: a lost node
                _put(self.account_id, result, json.dumps({
                    "ok": False, "terminal": stage == a.fail_terminal,
                    "error": "ValueError: bad input" if stage == a.fail_terminal else "S3 SlowDown"}).encode())
        return added

    run_instances, launched = InstanceBackend.run_instances, []

    def run_and_train(self, image_id, count, user_data, *args, **kwargs):
        reservation = run_instances(self, image_id, count, user_data, *args, **kwargs)
        script = base64.b64decode(str(user_data)).decode() if user_data else ""
        found = re.search(r"^RESULT=(.*)$", script, re.M)
        if not found:  # not the training instance (moto's EMR starts instances too)
            return reservation
        launched.append(reservation.instances[0].id)
        if a.lose_instance and len(launched) == 1:
            self.terminate_instances([launched[0]])  # reclaimed before it could write anything
            return reservation
        result = {"ok": False, "terminal": True, "error": "ValueError: every partitioning needs >= 2 classes"} \
            if a.fail_training else {"ok": True, "result": {}}
        _put(self.account_id, shlex.split(found.group(1))[0], json.dumps(result).encode())
        return reservation

    ElasticMapReduceBackend.add_job_flow_steps = add_and_settle
    InstanceBackend.run_instances = run_and_train


def states(dr) -> dict:
    return {ti.task_id: {"state": str(ti.state), "tries": ti.try_number} for ti in dr.get_task_instances()}


def local_argv(dag, dr, params: dict) -> dict:
    """What the local lane would run for this very run: its LocalStages' rendered argument lists."""
    import jinja2

    env = jinja2.Environment()
    env.filters["ds"] = lambda d: d.strftime("%Y-%m-%d")
    context = {"params": params, "run_id": dr.run_id, "data_interval_start": dr.data_interval_start,
               "data_interval_end": dr.data_interval_end}
    out = {}
    for task in dag.tasks:
        if not task.task_id.startswith("aws.") and hasattr(task, "argv"):
            task.options = {k: env.from_string(str(v)).render(**context) for k, v in task.options.items()}
            out[task.stage] = task.argv(params)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fail-once")
    ap.add_argument("--fail-terminal")
    ap.add_argument("--fail-always")
    ap.add_argument("--lose-instance", action="store_true")
    ap.add_argument("--fail-training", action="store_true")
    ap.add_argument("--cluster-id", action="store_true", help="run on an existing cluster")
    a = ap.parse_args()

    import boto3
    from moto import mock_aws

    with mock_aws():
        patch_moto(a)
        for b in ("deeploc-lake", "deeploc-images", "deeploc-meta"):
            boto3.client("s3").create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        ami = boto3.client("ec2").describe_images()["Images"][0]["ImageId"]
        boto3.client("iam").create_instance_profile(InstanceProfileName="deeploc-train")
        given = ""
        if a.cluster_id:
            given = boto3.client("emr").run_job_flow(
                Name="shared", ReleaseLabel="emr-spark-8.0.0", JobFlowRole="r", ServiceRole="r",
                Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                           "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]

        from airflow.dag_processing.dagbag import DagBag

        dags = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags
        common = {"target": "aws", "lake": LAKE, "bucket": IMAGES, "cluster_id": given}
        runs = {"deeploc_ingestion": {"conf": {**common, "metadata": META},
                                      "logical_date": datetime(2011, 1, 1, tzinfo=timezone.utc)},
                "deeploc_model": {"conf": {**common, "run": "m1", "train_ami": ami}}}
        result = {"given_cluster": given, "runs": {}}
        for dag_id, spec in runs.items():
            dag = dags[dag_id]
            dag.end_date = None
            for task in dag.tasks:  # retries stay as declared; only the waits between them go
                task.end_date, task.retry_delay, task.retry_exponential_backoff = None, timedelta(0), False
            dr = dag.test(run_conf=spec["conf"], logical_date=spec.get("logical_date"))
            params = {**{k: dag.params[k] for k in dag.params}, **spec["conf"]}
            result["runs"][dag_id] = {"state": str(dr.state), "tasks": states(dr),
                                      "local_argv": local_argv(dag, dr, params)}
        emr, ec2 = boto3.client("emr"), boto3.client("ec2")
        result["clusters"] = [
            {"id": c["Id"], "name": c["Name"], "state": c["Status"]["State"],
             "tags": {t["Key"]: t["Value"] for t in emr.describe_cluster(ClusterId=c["Id"])["Cluster"].get("Tags", [])},
             "groups": [g["InstanceGroupType"] for g in emr.list_instance_groups(ClusterId=c["Id"])["InstanceGroups"]],
             "steps": [s["Config"]["Args"] for s in reversed(emr.list_steps(ClusterId=c["Id"])["Steps"])]}
            for c in emr.list_clusters()["Clusters"]]
        result["instances"] = []
        for r in ec2.describe_instances()["Reservations"]:
            for i in r["Instances"]:
                data = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
                if "Value" not in data["UserData"]:
                    continue  # one of moto's EMR nodes
                result["instances"].append({"id": i["InstanceId"], "state": i["State"]["Name"],
                                            "image": i["ImageId"], "type": i["InstanceType"],
                                            "user_data": base64.b64decode(data["UserData"]["Value"]).decode()})
        code = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="deeploc-lake", Prefix="lake/_code/")
                .get("Contents", [])]
        result["code"] = code
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
