"""What the plan prices a run with, and the rates it sizes it with, each with where it comes from.

Prices: AWS's public price list for us-west-2 (Oregon, where multimedia-commons lives), Linux,
on-demand, per hour, read for this table in November 2026; EMR's uplift per instance-hour from the EMR
price list of the same date. Spot: the typical discount of the last three months' spot price history
of the same types in us-west-2 at that date (spot prices move by the hour; the plan prices spot at
this share of on-demand). Update the table (and ``DATE``) when prices move; docs/aws.md repeats it.
"""

from __future__ import annotations

DATE, REGION = "2026-11", "us-west-2"
# type: (vCPUs, memory GiB, GPUs, on-demand $/h, EMR uplift $/h)
INSTANCES = {
    "m5.2xlarge": (8, 32, 0, 0.384, 0.096),
    "m5.4xlarge": (16, 64, 0, 0.768, 0.192),
    "r5.2xlarge": (8, 64, 0, 0.504, 0.126),
    "r5.4xlarge": (16, 128, 0, 1.008, 0.252),
    "c5.4xlarge": (16, 32, 0, 0.680, 0.170),
    "g4dn.xlarge": (4, 16, 1, 0.526, 0.131),
    "g4dn.2xlarge": (8, 32, 1, 0.752, 0.150),
    "g5.2xlarge": (8, 32, 1, 1.212, 0.303),
    "g5.12xlarge": (48, 192, 4, 5.672, 0.270),
    "p4d.24xlarge": (96, 1152, 8, 21.958, 0.270),
}
SPOT_SHARE = 0.35        # spot price as a share of on-demand (typical for these types at DATE)
GP3_PER_GB_MONTH = 0.08  # EBS gp3 storage, $ per GB-month
S3_PUT, S3_GET = 0.005 / 1000, 0.0004 / 1000

# The quotas the plan checks against when it cannot ask the Service Quotas API (local target, or no
# permission): what docs/aws.md tells users to request. On AWS the plan reads the account's own.
QUOTA_CODES = {"standard": "L-1216C47A", "gpu": "L-DB2E81BA"}   # on-demand vCPUs: A,C,D,H,I,M,R,T,Z; and G,VT
DEFAULT_QUOTAS = {"standard": 264, "gpu": 40}

# Rates the plan sizes stage hours with. "measured": benchmarks/RESULTS.md on a 2-core AMD EPYC VM
# (per core, scaled by cores); "assumed": not measured by this project (no GPU was lent), from the
# vendors' published training throughputs, to be replaced by benchmarks/gpu_train.py's figures.
RATES = {
    "parse_rows_per_core_s": (31_000, "measured: parse step, 4M rows bz2, 62k rows/s on 2 cores"),
    "metadata_rows_per_core_s": (150_000, "measured: metadata slices, ~0.33 s per 100k rows on 2 cores"),
    "availability_rows_per_core_s": (20_000, "measured: listing by prefix, request-bound; moto, so rough"),
    "faces_images_per_core_s": (12, "measured: Haar cascade, ~80 ms for a 512x512 photo on one core"),
    "shards_images_per_core_s": (100, "measured: decode + resize of 640x480 JPEGs, ~200/s a core, halved for writes"),
    "gpu_train_images_s": ({"g4dn": 120, "g5": 300, "p4d": 2400},
                           "assumed: ResNet-50-class network at 224 px, mixed precision, per instance"),
    "gpu_infer_images_s": ({"g4dn": 250}, "assumed: ResNet-50-class network at 224 px, one T4"),
    "gp3_mb_s": (125, "AWS: gp3 baseline throughput"),
    "cluster_start_h": (10 / 60, "reported, not measured here: EMR 7/8 take ~8-12 min from RunJobFlow to WAITING"),
}


def hourly(instance: str, emr: bool = True, spot: bool = False) -> float:
    """$ per hour of one instance (EC2, plus EMR's uplift on a cluster; spot at the typical share)."""
    if instance not in INSTANCES:
        raise KeyError(f"no price for {instance}: add it to deeploc/prices.py ({REGION}, {DATE})")
    _, _, _, ec2, uplift = INSTANCES[instance]
    return ec2 * (SPOT_SHARE if spot else 1.0) + (uplift if emr else 0.0)


def vcpus(instance: str) -> int:
    return INSTANCES[instance][0]


def gpus(instance: str) -> int:
    return INSTANCES[instance][2]


def rate(name: str, instance: str | None = None) -> float:
    value = RATES[name][0]
    return value[instance.split(".")[0]] if isinstance(value, dict) else value
