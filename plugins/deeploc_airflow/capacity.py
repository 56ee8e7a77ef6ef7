"""The vCPUs EMR clusters hold, against the account's quotas: standard instances (A, C, D, H, I, M, R,
T, Z) and GPU ones (G, VT) count apart. Used by ``TransientCluster`` to wait for room before asking
EMR for a cluster (EMR refuses one that would pass a quota, and the cluster dies while starting)."""

from __future__ import annotations

import functools

CLUSTER_TAG = "deeploc:cluster"   # every cluster the aws target starts carries it (aws_package.job_flow)
LIVE = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")


@functools.lru_cache(maxsize=64)
def _vcpus(instance_type: str) -> tuple[int, bool]:
    """(vCPUs, is a GPU type): from the price table, else from EC2 itself."""
    from deeploc import prices

    if instance_type in prices.INSTANCES:
        return prices.vcpus(instance_type), bool(prices.gpus(instance_type))
    import boto3

    info = boto3.client("ec2").describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"][0]
    return info["VCpuInfo"]["DefaultVCpus"], bool(info.get("GpuInfo"))


def _count(groups) -> dict[str, int]:
    """{"standard": vCPUs, "gpu": vCPUs} of (instance type, count) pairs."""
    out = {"standard": 0, "gpu": 0}
    for instance_type, count in groups:
        vcpus, gpu = _vcpus(instance_type)
        out["gpu" if gpu else "standard"] += vcpus * int(count)
    return out


def of_job_flow(job_flow: dict) -> dict[str, int]:
    """What a cluster asked for with these ``run_job_flow`` arguments holds."""
    return _count((g["InstanceType"], g["InstanceCount"]) for g in job_flow["Instances"]["InstanceGroups"])


def held(emr) -> dict[str, int]:
    """What the pipeline's live clusters hold now (other clusters of the account count against the quota
    too; the plan's quota check reads the quota itself, this counts only what the pipeline runs)."""
    total = {"standard": 0, "gpu": 0}
    for summary in emr.get_paginator("list_clusters").paginate(ClusterStates=list(LIVE)):
        for c in summary["Clusters"]:
            tags = {t["Key"] for t in emr.describe_cluster(ClusterId=c["Id"])["Cluster"].get("Tags", [])}
            if CLUSTER_TAG not in tags:
                continue
            groups = emr.list_instance_groups(ClusterId=c["Id"])["InstanceGroups"]
            for k, v in _count((g["InstanceType"], g["RequestedInstanceCount"]) for g in groups).items():
                total[k] += v
    return total
