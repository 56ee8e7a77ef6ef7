"""Run both DAGs on the aws target against moto, in this process, and print what happened as JSON.

Used by ``test_aws_target.py`` in a subprocess, for one scenario or several in turn (``--then``
separates them; each one starts on an empty moto, with the moto patches of its own flags only, and
Airflow's database is shared: a DAG run is replaced by the next one of the same date, as ``dag.test``
does). A moto server runs in a thread of this process (boto3, pyarrow and pyiceberg reach it over
HTTP; this script reaches its state directly). moto never runs a step or boots an instance, so this
script plays their part, as the real ones would: each EMR step is set to COMPLETED or FAILED when it is
added (a failed step leaves its result file, see ``deeploc.step``), and the training instance's user
data is read at launch and its result written (or the instance is terminated without one, as a
reclaimed spot instance is). The lake holds what the plan reads (a small faces table in Glue, photos
in the image bucket, a metadata file, the wheelhouse's markers) and the account the roles it checks.

    python tests/aws_on_moto.py OUT.json [--fail-once STAGE] [--fail-terminal STAGE] [--fail-always STAGE]
                                         [--cluster-dies STAGE] [--lose-instance [--stale-instance]]
                                         [--unlisted-instance] [--fail-training] [--cluster-id]
                                         [--busy-cluster] [--no-wheelhouse] [--tiny-volume]
                                         [--then OUT2.json FLAGS...]...
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shlex
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from unittest import mock

LAKE, IMAGES, META = "s3://deeploc-lake/lake", "s3://deeploc-images", "s3://deeploc-meta/yfcc100m_*.bz2"


ACCOUNT = "123456789012"  # moto's default account


def _put(account_id: str, uri: str, body: bytes) -> None:
    from moto.s3.models import s3_backends

    bucket, key = uri[5:].split("/", 1)
    s3_backends[account_id]["aws"].put_object(bucket, key, body)


def _emr(account_id: str = ACCOUNT):
    from moto.emr.models import emr_backends

    return emr_backends[account_id]["us-west-2"]


def patch_moto(a, events: list, stack: contextlib.ExitStack) -> None:
    """Play EMR's steps and the training instance (see the module's docstring); record in ``events``
    the clusters asked for, the instances launched and terminated, in order. The patches last as long
    as ``stack``."""
    from moto.ec2.models.instances import InstanceBackend
    from moto.emr.models import ElasticMapReduceBackend

    add_steps, submitted = ElasticMapReduceBackend.add_job_flow_steps, Counter()

    def add_and_settle(self, job_flow_id, steps):
        added = add_steps(self, job_flow_id, steps)
        for step in added:
            result, stage = step.args[4], step.args[5]
            submitted[stage] += 1
            events.append(["step", step.name])
            if stage == a.cluster_dies:  # the cluster went away under the step (a lost primary node)
                cluster = self.clusters[job_flow_id]
                cluster.state, step.state = "TERMINATED_WITH_ERRORS", "CANCELLED"
                cluster.last_state_change_reason = "The primary node was lost"
                continue
            fails = stage in (a.fail_always, a.fail_terminal) or (stage == a.fail_once and submitted[stage] == 1)
            step.state = "FAILED" if fails else "COMPLETED"
            if fails and stage != a.fail_always:  # a step that ran and said why; fail_always: a lost node
                _put(self.account_id, result, json.dumps({
                    "ok": False, "terminal": stage == a.fail_terminal,
                    "error": "ValueError: bad input" if stage == a.fail_terminal else "S3 SlowDown"}).encode())
        return added

    run_job_flow = ElasticMapReduceBackend.run_job_flow

    def recorded_job_flow(self, **kwargs):
        events.append(["cluster", kwargs["name"]])
        return run_job_flow(self, **kwargs)

    run_instances, terminate, launched = InstanceBackend.run_instances, InstanceBackend.terminate_instances, []

    def run_and_train(self, image_id, count, user_data, *args, **kwargs):
        reservation = run_instances(self, image_id, count, user_data, *args, **kwargs)
        script = base64.b64decode(str(user_data)).decode() if user_data else ""
        found = re.search(r"^RESULT=(.*)$", script, re.M)
        if not found:  # not the training instance (moto's EMR starts instances too)
            return reservation
        launched.append(reservation.instances[0].id)
        events.append(["launch", launched[-1]])
        if a.lose_instance and len(launched) == 1:
            if a.stale_instance:  # the lost try's worker died too, leaving a second instance of the run running
                ghost = run_instances(self, image_id, 1, None, *args, **kwargs).instances[0]
                events.append(["ghost", ghost.id])
            self.terminate_instances([launched[0]])  # reclaimed before it could write anything
            return reservation
        result = {"ok": False, "terminal": True, "error": "ValueError: every partitioning needs >= 2 classes"} \
            if a.fail_training else {"ok": True, "result": {}}
        _put(self.account_id, shlex.split(found.group(1))[0], json.dumps(result).encode())
        return reservation

    def recorded_terminate(self, instance_ids):
        events.append(["terminate", sorted(instance_ids)])
        return terminate(self, instance_ids)

    for cls, name, patched in ((ElasticMapReduceBackend, "add_job_flow_steps", add_and_settle),
                               (ElasticMapReduceBackend, "run_job_flow", recorded_job_flow),
                               (InstanceBackend, "run_instances", run_and_train),
                               (InstanceBackend, "terminate_instances", recorded_terminate)):
        stack.enter_context(mock.patch.object(cls, name, patched))
    if a.unlisted_instance:  # EC2 does not list a just-launched instance for its first two describes
        from moto.ec2.exceptions import InvalidInstanceIdError

        by_ids, calls = InstanceBackend.get_reservations_by_instance_ids, Counter()

        def not_yet(self, instance_ids, filters=None):
            if launched and launched[-1] in instance_ids and calls[launched[-1]] < 2:
                calls[launched[-1]] += 1
                events.append(["not_listed", launched[-1]])
                raise InvalidInstanceIdError(launched[-1])
            return by_ids(self, instance_ids, filters)

        stack.enter_context(mock.patch.object(InstanceBackend, "get_reservations_by_instance_ids", not_yet))


def stock_lake(wheelhouse: bool) -> None:
    """What the plan reads: the account's roles, the faces table (in Glue, its files in the lake) with
    real JPEGs in the image bucket, a metadata file, and the wheelhouse's markers."""
    import bz2

    import boto3
    import cv2
    import numpy as np
    import pandas as pd

    from deeploc.storage import catalog
    from deeploc.storage.lake import Lake
    from deeploc_airflow import aws_package

    for b in ("deeploc-lake", "deeploc-images", "deeploc-meta"):
        boto3.client("s3").create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    iam = boto3.client("iam")
    for role in ("EMR_DefaultRole", "EMR_EC2_DefaultRole"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="deeploc-train")
    rng, n = np.random.default_rng(3), 48
    faces = pd.DataFrame({
        "photo_id": np.arange(1, n + 1, dtype="int64"), "object_key": [f"p/{i:03d}.jpg" for i in range(n)],
        "latitude": rng.uniform(-60, 70, n), "longitude": rng.uniform(-180, 180, n), "face_ratio": np.zeros(n),
        "title": "t", "page_url": "u", "license_name": "l", "license_url": "u",
        "user_nsid": [f"u{i % 12}" for i in range(n)], "user_nickname": "n", "upload_month": "2010-06"})
    s3 = boto3.client("s3")
    for key in faces["object_key"]:
        pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        s3.put_object(Bucket="deeploc-images", Key=key, Body=cv2.imencode(".jpg", pixels)[1].tobytes())
    lake = Lake(LAKE)
    catalog.write_frame(lake, "faces", faces)
    lines = "".join(f"{i}\tline\n" for i in range(200)).encode()
    s3.put_object(Bucket="deeploc-meta", Key="yfcc100m_0.bz2", Body=bz2.compress(lines))
    if wheelhouse:
        prefix = aws_package.wheelhouse_uri(LAKE, "", aws_package.constraints())
        for extra in aws_package.EXTRAS:
            lake.write_bytes(f"{prefix}/{extra}/READY", b"")


def hold_capacity(events: list, stack: contextlib.ExitStack) -> None:
    """A cluster of the pipeline (another run's) holding vCPUs, so the next one must wait; it ends once
    that one has looked twice (and by the time ``stack`` closes)."""
    import boto3

    emr = boto3.client("emr")
    busy = emr.run_job_flow(Name="deeploc-busy-other-run", ReleaseLabel="emr-spark-8.0.0", JobFlowRole="r",
                            ServiceRole="r", Tags=[{"Key": "deeploc:cluster", "Value": "busy"}],
                            Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                                       "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
    from moto.emr.models import ElasticMapReduceBackend

    listed, looks = ElasticMapReduceBackend.list_clusters, Counter()

    def counted(self, *args, **kwargs):
        looks["n"] += 1
        return listed(self, *args, **kwargs)

    stack.enter_context(mock.patch.object(ElasticMapReduceBackend, "list_clusters", counted))

    def end_later():
        deadline = time.monotonic() + 120
        while looks["n"] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        events.append(["busy_ended", busy])
        boto3.client("emr").terminate_job_flows(JobFlowIds=[busy])

    ender = threading.Thread(target=end_later, daemon=True)
    ender.start()
    stack.callback(ender.join)  # before the next scenario's moto, which has no such cluster


def states(dr) -> dict:
    return {ti.task_id: {"state": str(ti.state), "tries": ti.try_number} for ti in dr.get_task_instances()}


def local_argv(dag, dr, params: dict) -> dict:
    """What the local lane would run for this very run: its LocalStages' argument lists, rendered by
    Airflow itself (the task's template fields, in this run's context)."""
    import copy

    context = {"params": params, "run_id": dr.run_id, "data_interval_start": dr.data_interval_start,
               "data_interval_end": dr.data_interval_end}
    out = {}
    for task in (copy.copy(t) for t in dag.tasks if not t.task_id.startswith("aws.") and hasattr(t, "argv")):
        task.render_template_fields(context)
        out[task.stage] = task.argv(params)
    return out


def parse(argv: list[str]) -> list[argparse.Namespace]:
    """One namespace per scenario: ``argv`` split at ``--then``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--fail-once")
    ap.add_argument("--fail-terminal")
    ap.add_argument("--fail-always")
    ap.add_argument("--cluster-dies")
    ap.add_argument("--lose-instance", action="store_true")
    ap.add_argument("--stale-instance", action="store_true", help="with --lose-instance: a second one left running")
    ap.add_argument("--unlisted-instance", action="store_true")
    ap.add_argument("--fail-training", action="store_true")
    ap.add_argument("--cluster-id", action="store_true", help="run on an existing cluster")
    ap.add_argument("--busy-cluster", action="store_true", help="another run's cluster holds the vCPUs at first")
    ap.add_argument("--no-wheelhouse", action="store_true")
    ap.add_argument("--tiny-volume", action="store_true", help="a 1 GB training volume")
    scenarios, start = [], 0
    for i, arg in enumerate([*argv, "--then"]):
        if arg == "--then":
            scenarios.append(ap.parse_args(argv[start:i]))
            start = i + 1
    return scenarios


def share_service_models() -> None:
    """One cache of botocore's loaded JSON (service models, endpoints) for the whole process, as a
    single boto3 session has. ``dag.test`` runs every task in this process, where a deployment runs each
    in its own, and each task's Amazon-provider hook makes a session of its own, whose loader would parse
    the same models again: ~4 core-seconds a scenario."""
    from botocore import loaders

    init, shared = loaders.Loader.__init__, {}

    def init_sharing(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._cache = shared  # what botocore's instance_cache decorator keeps its results in

    loaders.Loader.__init__ = init_sharing


def main(argv: list[str]) -> int:
    import moto_s3

    from deeploc.storage import catalog

    share_service_models()
    server, url = moto_s3.start()
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        for a in parse(argv):
            moto_s3.reset(url)
            catalog._catalog.cache_clear()  # its Glue database went with the reset: made again, as in a new process
            result = scenario(a)
            with open(a.out, "w") as f:
                json.dump(result, f, indent=1, default=str)
    finally:
        server.stop()
    return 0


def scenario(a: argparse.Namespace) -> dict:
    """Both DAGs' runs on an empty moto with the faults ``a`` asks for, and what the account holds after."""
    import boto3

    events: list = []
    with contextlib.ExitStack() as stack:
        if a.tiny_volume:
            aws = {**json.loads(os.environ.get("DEEPLOC_AWS") or "{}"), "train_volume_gb": 1}
            stack.enter_context(mock.patch.dict(os.environ, {"DEEPLOC_AWS": json.dumps(aws)}))
        stock_lake(wheelhouse=not a.no_wheelhouse)
        patch_moto(a, events, stack)
        ami = boto3.client("ec2").describe_images()["Images"][0]["ImageId"]
        given = ""
        if a.cluster_id:
            given = boto3.client("emr").run_job_flow(
                Name="shared", ReleaseLabel="emr-spark-8.0.0", JobFlowRole="r", ServiceRole="r",
                Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                           "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
        if a.busy_cluster:
            hold_capacity(events, stack)
        result = run_dags(given, ami)
    result["events"] = events
    result.update(account_state())
    return result


def run_dags(given: str, ami: str) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    dags = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).dags
    common = {"target": "aws", "lake": LAKE, "bucket": IMAGES, "cluster_id": given}
    runs = {"deeploc_ingestion": {"conf": {**common, "metadata": META},
                                  "logical_date": datetime(2010, 1, 1, tzinfo=timezone.utc)},
            "deeploc_model": {"conf": {**common, "run": "m1", "train_ami": ami}}}
    result = {"given_cluster": given, "runs": {}}
    for dag_id, spec in runs.items():
        dag = dags[dag_id]
        dag.end_date = None
        for task in dag.tasks:  # retries stay as declared; only the waits between them go
            task.end_date, task.retry_delay, task.retry_exponential_backoff = None, timedelta(0), False
        dr = dag.test(run_conf=spec["conf"], logical_date=spec.get("logical_date"))
        params = {**{k: dag.params[k] for k in dag.params}, **spec["conf"]}
        result["runs"][dag_id] = {"state": str(dr.state), "tasks": states(dr), "local_argv": local_argv(dag, dr, params),
                                  "plan": kept_plan(dag_id)}
    return result


def kept_plan(dag_id: str) -> dict | None:
    """The plan the run's first task kept in the lake (the only one there: one run per DAG)."""
    from deeploc.storage.lake import Lake

    lake = Lake(LAKE)
    found = lake.files(lake.path("plans", dag_id), ".json") if lake.exists(lake.path("plans", dag_id)) else []
    return json.loads(lake.read_bytes(found[0])) if found else None


def account_state() -> dict:
    """The clusters (steps, groups, tags), the training instances (user data) and the code package."""
    import boto3

    emr, ec2 = boto3.client("emr"), boto3.client("ec2")
    out = {"clusters": [
        {"id": c["Id"], "name": c["Name"], "state": c["Status"]["State"],
         "reason": c["Status"].get("StateChangeReason", {}).get("Message", ""),
         "tags": {t["Key"]: t["Value"] for t in emr.describe_cluster(ClusterId=c["Id"])["Cluster"].get("Tags", [])},
         "groups": [g["InstanceGroupType"] for g in emr.list_instance_groups(ClusterId=c["Id"])["InstanceGroups"]],
         "steps": [s["Config"]["Args"] for s in reversed(emr.list_steps(ClusterId=c["Id"])["Steps"])],
         "step_names": [s["Name"] for s in reversed(emr.list_steps(ClusterId=c["Id"])["Steps"])]}
        for c in emr.list_clusters()["Clusters"] if c["Name"] != "deeploc-busy-other-run"], "instances": []}
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            data = ec2.describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")
            if "Value" not in data["UserData"]:
                continue  # one of moto's EMR nodes, or the scenario's ghost
            out["instances"].append({"id": i["InstanceId"], "state": i["State"]["Name"],
                                     "image": i["ImageId"], "type": i["InstanceType"],
                                     "user_data": base64.b64decode(data["UserData"]["Value"]).decode()})
    out["code"] = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="deeploc-lake", Prefix="lake/_code/")
                   .get("Contents", []) if "/wheels/" not in o["Key"]]
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
