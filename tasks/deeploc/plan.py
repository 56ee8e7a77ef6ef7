"""``deeploc plan``: what a run will need and cost, and whether it fits, before anything is spent.

It reads the lake (the catalog's row counts; the photos of the faces table the run would train on,
chosen as the partitioning stage chooses them; a few of their images from the bucket) and, on the aws
target, the account (quotas, the AMI, the subnets' tags, the roles, the buckets). It computes rows and
photos per stage and split, the classes each partitioning will have (the real cell building on the
real coordinates), the model's size, the shards' bytes (measured on real images), the training disk and
input rate, the clusters and instances with their vCPUs, hours and dollars (``deeploc.prices``), and a
list of checks, each ok or failed with a message naming the setting to change.

Every figure says where it comes from: counted in the lake, measured here, a price from the price
list, or a rate from ``deeploc.prices.RATES`` (measured by the benchmarks, or assumed where no GPU was
at hand). The aws target's first task makes the same plan, keeps it under ``plans/`` and stops the run
before a cluster starts when a check fails.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from deeploc import aws_config, prices
from deeploc.learn import profiles
from deeploc.storage import catalog, runs
from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)

SHARD_SAMPLE = 24          # images read from the bucket to measure a shard record
SYSTEM_GB = 40             # the training AMI, the CUDA build of TensorFlow, logs: measured on the DL AMI's docs
MULTIPART_MAX_BYTES = 10_000 * (512 << 20)   # the lake's multipart uploads: 10,000 parts of 512 MB
SCALE_LIMIT = 2.0          # a partitioning sized for N photos, applied to more than this many times N: refused
# Backbones: (parameters, feature width) without the top, counted with keras.applications (efficientnet_lite0:
# deeploc.learn.efficientnet_lite) at 224 px.
BACKBONES = {"ResNet50": (23_587_712, 2048), "ResNet50V2": (23_564_800, 2048), "ResNet101V2": (42_626_560, 2048),
             "ResNet152V2": (58_331_648, 2048), "EfficientNetB0": (4_049_571, 1280),
             "MobileNetV3Small": (939_120, 576), "MobileNetV3Large": (2_996_352, 960), "ConvNeXtTiny": (27_820_128, 768),
             "efficientnet_lite0": (3_413_024, 1280)}
OPTIMIZER_SLOTS = {"adam": 2, "sgd": 1}   # values the optimizer keeps per parameter


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str


# -- the photos a model run trains on ---------------------------------------------------------------------
def photos(lake: Lake, image_set: str, face_threshold: float, max_images: int | None, split_by: str,
           seed: int = 0):
    """The photos the partitioning stage would choose (image set, stable sample, split), read with only
    the rows a sample can need kept in memory: a sample of n keeps the photos whose seeded hash is
    below a cut expected to pass ~n + 6 sigma of them (read again with a wider cut in the rare case it
    passes fewer than n)."""
    import pandas as pd

    from deeploc.learn import splits
    from deeploc.stages.partitioning import COLUMNS, select

    table = catalog.load(lake, "faces")
    if table is None or table.current_snapshot() is None:
        raise FileNotFoundError(f"plan: no faces table in the catalog of {lake.root}; run the ingestion DAG first")
    total = int(table.current_snapshot().summary.additional_properties.get("total-records", 0))
    share = 1.0 if not max_images or max_images >= total else min(1.0, (max_images + 6 * math.sqrt(max_images) + 100) / total)
    while True:
        kept = []
        for batch in table.scan(selected_fields=tuple(COLUMNS)).to_arrow_batch_reader():
            frame = batch.to_pandas()
            if share < 1.0:
                frame = frame[splits.sample_hash(frame["photo_id"].to_numpy(), seed) < share]
            kept.append(frame)
        df = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=COLUMNS)
        chosen = select(df, image_set, face_threshold, max_images, seed, split_by)
        if share >= 1.0 or len(chosen) >= max_images:
            return chosen, total
        share = min(1.0, share * 2)


def classes(df, spec: str) -> dict[str, int]:
    """Classes of each partitioning, built on the training photos as the partitioning stage builds them."""
    from deeploc.earth import partitioning, s2

    train = df[df["split"] == "train"]
    leaf = s2.leaf_ids(train["latitude"].to_numpy(float), train["longitude"].to_numpy(float))
    out = {}
    for s in partitioning.Spec.parse(spec):
        cells, keep = partitioning.assign_cells(leaf.copy(), s.tau_min, s.tau_max)
        out[s.name] = int(len(np.unique(cells[keep])))
    return out


def model_size(prof, n_classes: dict[str, int]) -> dict:
    """Parameters (backbone table or a counted small CNN, plus one dense output per partitioning) and the
    checkpoint's bytes (float32 weights and the optimizer's values)."""
    if prof.backbone == "small_cnn":
        from deeploc.learn.model import SMALL_CNN_FILTERS

        params, c_in = 0, 3
        for w in SMALL_CNN_FILTERS:  # conv 3x3 without bias, batch norm (4 values a channel)
            params, c_in = params + 9 * c_in * w + 4 * w, w
        backbone, width = params, SMALL_CNN_FILTERS[-1]
    elif prof.backbone in BACKBONES:
        backbone, width = BACKBONES[prof.backbone]
    else:
        import keras

        net = getattr(keras.applications, prof.backbone)(include_top=False, weights=None, pooling="avg",
                                                         input_shape=(prof.input_size, prof.input_size, 3))
        backbone, width = net.count_params(), net.output_shape[-1]
    heads = sum((width + 1) * n for n in n_classes.values())
    slots = OPTIMIZER_SLOTS.get(getattr(prof, "optimizer", "adam"), 2)
    return {"backbone": prof.backbone, "parameters": backbone + heads, "output_parameters": heads, "width": width,
            "checkpoint_bytes": (backbone + heads) * 4 * (1 + slots)}


def shard_bytes(lake: Lake, bucket, keys, side: int) -> dict:
    """Bytes of a shard record, measured on real images of the run: read, resized and JPEG-encoded as
    the shards stage does, and framed as a TFRecord file holds them."""
    from deeploc.learn.tfrecord import example, frame
    from deeploc.sources import images

    sizes, why = [], ""
    for key in keys[:SHARD_SAMPLE]:
        try:
            jpeg = images.encode_jpeg(images.resize_short(images.read_rgb(bucket, key, min_side=side), side))
        except images.Unreadable as exc:
            why = f"{key}: {exc}"
            continue
        sizes.append(len(frame(example(jpeg, 0, {"c": 0}))))
    if not sizes:
        raise FileNotFoundError(f"plan: none of {min(len(keys), SHARD_SAMPLE)} sampled images could be read from "
                                f"{bucket.location} (the last: {why})")
    return {"per_photo": int(np.mean(sizes)), "sampled": len(sizes), "side": side}


# -- instances, hours and dollars ------------------------------------------------------------------------
def cluster(name: str, stages: list[str], hours_of_work: float, primary: str, core: str | None = None,
            core_count: int = 0, task: str | None = None, task_count: int = 0, task_spot: bool = True) -> dict:
    """An EMR cluster: its nodes and vCPUs, its hours (start-up plus the stages' work) and dollars."""
    hours = prices.rate("cluster_start_h") + hours_of_work
    nodes = [(primary, 1, False), *([(core, core_count, False)] if core and core_count else []),
             *([(task, task_count, task_spot)] if task and task_count else [])]
    on_demand = hours * sum(prices.hourly(t, emr=True) * n for t, n, _ in nodes)
    with_spot = hours * sum(prices.hourly(t, emr=True, spot=spot) * n for t, n, spot in nodes)
    return {"name": name, "stages": stages, "nodes": [{"type": t, "count": n, "spot": s} for t, n, s in nodes],
            "vcpus": sum(prices.vcpus(t) * n for t, n, _ in nodes),
            "gpu_vcpus": sum(prices.vcpus(t) * n for t, n, _ in nodes if prices.gpus(t)),
            "hours": round(hours, 2), "cost": {"on_demand": round(on_demand, 2), "with_spot": round(with_spot, 2)}}


def _cores(cfg: dict, gpu: bool = False) -> int:
    kind = "infer_core" if gpu else "core"
    return prices.vcpus(cfg[f"{kind}_type"]) * int(cfg[f"{kind}_count"]) + \
        (0 if gpu else prices.vcpus(cfg["task_type"]) * int(cfg["task_count"]))


def _cpu_cluster(name: str, stages: list[str], work_h: float, cfg: dict) -> dict:
    return cluster(name, stages, work_h, cfg["master_type"], cfg["core_type"], int(cfg["core_count"]),
                   cfg["task_type"], int(cfg["task_count"]), bool(cfg["task_spot"]))


# -- the checks that need the account --------------------------------------------------------------------
class Account:
    """What the plan asks AWS (boto3, the instance role or the environment's credentials). Every answer
    that cannot be had (no permission, no network) is a failed check saying so, never a guess."""

    def __init__(self, region: str | None = None):
        import boto3

        self.session, self.clients = boto3.session.Session(region_name=region), {}

    def _client(self, name: str):
        """One client a service (making one costs ~0.2 s of CPU; a plan asks the same services many times)."""
        if name not in self.clients:
            self.clients[name] = self.session.client(name)
        return self.clients[name]

    def quota(self, kind: str) -> tuple[int, str]:
        """(vCPUs, where the figure comes from)."""
        try:
            q = self._client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=prices.QUOTA_CODES[kind])
            return int(q["Quota"]["Value"]), "Service Quotas"
        except Exception as exc:  # noqa: BLE001 - no permission, or no such quota: the documented figure
            return prices.DEFAULT_QUOTAS[kind], f"docs/aws.md's figure (Service Quotas: {type(exc).__name__})"

    def check(self, name: str, what: str, call) -> Check:
        try:
            ok, message = call()
        except Exception as exc:  # noqa: BLE001 - the API's refusal is the finding
            return Check(name, False, f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
        return Check(name, ok, message)


def account_checks(account: Account, cfg: dict, locations: dict[str, str], train: bool) -> list[Check]:
    """The AMI, the subnets' EMR tag, the roles and the buckets."""
    from deeploc.storage.uris import split_s3

    ec2, iam = account._client("ec2"), account._client("iam")
    out = []
    if train:
        def ami():
            if not cfg["train_ami"]:
                return False, "no train_ami: set it in deeploc_aws (a GPU AMI with an NVIDIA driver)"
            found = ec2.describe_images(ImageIds=[cfg["train_ami"]])["Images"]
            return bool(found), f"train_ami {cfg['train_ami']}: {'found' if found else 'not in this region'}"
        out.append(account.check("ami", "train_ami", ami))
    for key in sorted({k for k in ("subnet", "train_subnet") if cfg[k]}):
        def tagged(key=key):
            subnet = ec2.describe_subnets(SubnetIds=[cfg[key]])["Subnets"][0]
            tags = {t["Key"]: t["Value"] for t in subnet.get("Tags", [])}
            ok = tags.get(aws_config.EMR_POLICY_TAG) == "true"
            return ok, (f"{key} {cfg[key]} carries {aws_config.EMR_POLICY_TAG}=true" if ok else
                        f"{key} {cfg[key]} lacks the tag {aws_config.EMR_POLICY_TAG}=true that "
                        "AmazonEMRServicePolicy_v2 requires: tag the subnet (docs/aws.md)")
        out.append(account.check(f"{key}_tag", key, tagged))
    for key in ("service_role", "job_flow_role"):
        out.append(account.check(f"{key}", key, lambda key=key: (
            bool(iam.get_role(RoleName=cfg[key])), f"{key} {cfg[key]} exists")))
    if train:
        out.append(account.check("train_instance_profile", "train_instance_profile", lambda: (
            bool(iam.get_instance_profile(InstanceProfileName=cfg["train_instance_profile"])),
            f"train_instance_profile {cfg['train_instance_profile']} exists")))
    s3 = account._client("s3")
    for what, uri in sorted(locations.items()):
        if uri.startswith("s3://"):
            out.append(account.check(f"{what}_reachable", what, lambda uri=uri: (
                bool(s3.list_objects_v2(Bucket=split_s3(uri)[0], Prefix=split_s3(uri)[1], MaxKeys=1) is not None),
                f"{uri} answers a listing")))
    return out


def scale_check(spec: str, sized_for: int, used: int) -> Check:
    """Taus are sized for a number of training photos: many times more photos give many times the classes."""
    ok = used <= SCALE_LIMIT * sized_for
    return Check("partitioning_scale", ok, f"the partitionings ({spec}) were sized for {sized_for:,} training photos; "
                 f"this run trains on {used:,}" + ("" if ok else
                 f" ({used / sized_for:.1f}x): set max_images, or partitionings with taus for that many photos "
                 "(the mp16 profile's are sized for 4.7M)"))


def _budget_checks(budget: dict | None, photos_used: int, dollars: float) -> list[Check]:
    if budget is None:
        return []
    how = ("raise the Variable deeploc_budget ({\"photos\": N, \"dollars\": D}), set max_images, or trigger the "
           "run by hand with the params you mean")
    return [Check("budget_photos", photos_used <= budget["photos"],
                  f"{photos_used:,} photos against an unattended budget of {budget['photos']:,}"
                  + ("" if photos_used <= budget["photos"] else f": {how}")),
            Check("budget_dollars", dollars <= budget["dollars"],
                  f"${dollars:,.2f} on demand against an unattended budget of ${budget['dollars']:,.2f}"
                  + ("" if dollars <= budget["dollars"] else f": {how}"))]


def _quota_checks(quotas: dict, standard: int, gpu: int) -> list[Check]:
    out = []
    for kind, need, what in (("standard", standard, "core_count / core_type / task_count (or request more)"),
                             ("gpu", gpu, "infer_core_count, train_instance_type (or request more G vCPUs)")):
        have, source = quotas[kind]
        out.append(Check(f"quota_{kind}", need <= have,
                         f"{need} {kind} vCPUs at once against a quota of {have} ({source})"
                         + ("" if need <= have else f": lower {what}")))
    return out


def _training(prof, cfg: dict, train: int, val: int, shard: dict, size: dict) -> tuple[dict, list[Check]]:
    """The training instance's part of a model plan, and its disk and time checks. Its disk holds the shards
    (the training files through a bounded cache, the validation sample whole: recorded in ``shard``), three
    checkpoints and the kNN index; it reads at the disk's rate or the GPU's, whichever is slower."""
    from deeploc import registry
    from deeploc.learn.knn import INDEX_PHOTOS

    itype, volume_gb = cfg["train_instance_type"], int(cfg["train_volume_gb"])
    index_bytes = min(train, INDEX_PHOTOS) * size["width"] * 4  # float32 embeddings
    cache = min(shard["per_photo"] * train, registry.get("train").option("shard_cache_gb").default * 1e9)
    shard["on_training_disk"] = int(cache + shard["per_photo"] * val)
    disk_gb = (shard["on_training_disk"] + 3 * size["checkpoint_bytes"] + index_bytes) / 1e9 + SYSTEM_GB
    disk_rate = prices.rate("gp3_mb_s") * 1e6 / max(1, shard["per_photo"])
    gpu_rate = prices.rate("gpu_train_images_s", itype)
    rate = min(disk_rate, gpu_rate)
    hours, limit = prof.epochs * (train + val) / rate / 3600, float(cfg["train_timeout_hours"])
    training = {"instance_type": itype, "spot": bool(cfg["train_spot"]), "epochs": prof.epochs,
                "disk_needed_gb": round(disk_gb, 1), "volume_gb": volume_gb,
                "knn_index_gb": round(index_bytes / 1e9, 2),
                "input_images_s": {"disk": round(disk_rate), "gpu": gpu_rate, "expected": round(rate)},
                "hours": round(hours, 2),
                "cost": {"on_demand": round(hours * prices.hourly(itype, emr=False), 2),
                         "with_spot": round(hours * prices.hourly(itype, emr=False, spot=True), 2)}}
    checks = [Check("disk", disk_gb <= volume_gb,
                    f"training needs {disk_gb:,.0f} GB (shards {shard['on_training_disk'] / 1e9:,.1f} GB, the cache "
                    f"they stream through, of {shard['total_bytes'] / 1e9:,.1f}; checkpoints, the kNN index "
                    f"{index_bytes / 1e9:,.1f} GB, system {SYSTEM_GB} GB) on a {volume_gb} GB volume"
                    + ("" if disk_gb <= volume_gb else ": raise train_volume_gb in deeploc_aws")),
              Check("train_time", hours <= limit,
                    f"training takes {hours:,.1f} h at {rate:,.0f} images/s against train_timeout_hours "
                    f"{cfg['train_timeout_hours']}" + ("" if hours <= limit else
                    f": raise train_timeout_hours (at most {aws_config.TRAIN_CEILING_H}), lower epochs or "
                    "max_images, or choose a faster train_instance_type"))]
    return training, checks


# -- the plans ----------------------------------------------------------------------------------------------
def model(lake: Lake, bucket, profile: str, target: str, cfg: dict, image_set: str = "full",
          face_threshold: float = 0.035, partitionings: str | None = None, max_images: int | None = None,
          split_by: str = "user", epochs: int | None = None, budget: dict | None = None,
          account: Account | None = None) -> dict:
    """The plan of a model run (partitioning, shards, train, infer, evaluate, removal_effect, publish)."""
    prof = profiles.get(profile).with_overrides(epochs=epochs)
    spec = partitionings or prof.partitionings
    sample = max_images if max_images is not None else prof.sample
    chosen, faces_rows = photos(lake, image_set, face_threshold, sample, split_by)
    split = {s: int((chosen["split"] == s).sum()) for s in ("train", "val", "test")}
    n_classes = classes(chosen, spec)
    size = model_size(prof, n_classes)
    from deeploc import registry

    train_keys = chosen.loc[chosen["split"] == "train", "object_key"].tolist()
    shard = shard_bytes(lake, bucket, train_keys, prof.shard_side)
    val = min(split["val"], registry.get("shards").option("val_max").default)  # the shards keep a sample
    shard["total_bytes"] = shard["per_photo"] * (split["train"] + val)

    training, training_checks = _training(prof, cfg, split["train"], val, shard, size)
    # The removal effect predicts the full image set's test photos once more, with the removal model,
    # when a run of the other image set is there to pair with.
    other = runs.latest(lake, "removal" if image_set == "full" else "full")
    effect_photos = 0 if other is None else split["test"] if image_set == "full" else int(
        (photos(lake, "full", face_threshold, sample, split_by)[0]["split"] == "test").sum())
    cores, gpu_nodes = _cores(cfg), int(cfg["infer_core_count"])
    clusters = [
        cluster("prep", ["partitioning"], len(chosen) / 200_000 / 3600 + 0.05, cfg["master_type"]),
        _cpu_cluster("shards", ["shards"], (split["train"] + val) /
                     (prices.rate("shards_images_per_core_s") * cores) / 3600, cfg),
        cluster("serve", ["infer", "evaluate", "removal_effect", "publish"],
                (split["test"] + effect_photos) / (prices.rate("gpu_infer_images_s", cfg["infer_core_type"]) * gpu_nodes) / 3600 + 0.1,
                cfg["master_type"], cfg["infer_core_type"], gpu_nodes)]
    dollars = {k: round(sum(c["cost"][k] for c in clusters) + training["cost"][k], 2) for k in ("on_demand", "with_spot")}

    used = split["train"]
    checks = [*training_checks,
              scale_check(spec, prof.sized_for, used),
              Check("checkpoint_upload", size["checkpoint_bytes"] <= MULTIPART_MAX_BYTES,
                    f"a checkpoint is {size['checkpoint_bytes'] / 1e9:.2f} GB, uploaded in parts (at most "
                    f"{MULTIPART_MAX_BYTES / 1e12:.1f} TB)")]
    gpu_vcpus = max(clusters[2]["gpu_vcpus"], prices.vcpus(cfg["train_instance_type"]))
    standard_vcpus = max(c["vcpus"] - c["gpu_vcpus"] for c in clusters)
    quotas, asked = _account(target, account, cfg, {"lake": lake.root, "bucket": bucket.location}, train=True)
    checks += asked + _quota_checks(quotas, standard_vcpus, gpu_vcpus)
    checks += _budget_checks(budget, used, dollars["on_demand"])
    return _finish({
        "kind": "model", "lake": lake.root, "profile": prof.name, "target": target,
        "data": {**_table_rows(lake), "faces_rows": faces_rows, "image_set": image_set, "sample": sample,
                 "photos": len(chosen), "split": split, "split_by": split_by,
                 "removal_effect": {"pair_with": other, "photos_to_predict": effect_photos}},
        "partitionings": [{"name": n, "classes": c, "spec": spec, "sized_for": prof.sized_for}
                          for n, c in n_classes.items()],
        "model": size, "shards": shard, "training": training, "clusters": clusters,
        "vcpus": {"standard_at_once": standard_vcpus, "gpu_at_once": gpu_vcpus, "quotas": _quota_table(quotas)},
        "cost": dollars, "checks": checks})


def ingestion(lake: Lake, bucket_location: str, target: str, cfg: dict, slice_rows: int, input_rows: int,
              budget: dict | None = None, account: Account | None = None, locations: dict | None = None) -> dict:
    """The plan of an ingestion run: ``input_rows`` lines to parse (0 when nothing changed), then a
    slice of ``slice_rows`` parsed rows through metadata, availability and faces on one cluster."""
    cores = _cores(cfg)
    geotagged = 0.484 * slice_rows  # YFCC100M's geotagged share (notes/yfcc100m.md) when nothing says better
    work = (input_rows / prices.rate("parse_rows_per_core_s") + slice_rows / prices.rate("metadata_rows_per_core_s")
            + geotagged / prices.rate("availability_rows_per_core_s")
            + geotagged / prices.rate("faces_images_per_core_s")) / cores / 3600
    ingest = _cpu_cluster("ingest", ["parse", "metadata", "availability", "faces"], work, cfg)
    quotas, checks = _account(target, account, cfg, {"lake": lake.root, "bucket": bucket_location, **(locations or {})},
                              train=False)
    checks += _quota_checks(quotas, ingest["vcpus"], 0)
    checks += _budget_checks(budget, 0, ingest["cost"]["on_demand"])
    return _finish({"kind": "ingestion", "lake": lake.root, "target": target,
                    "data": {**_table_rows(lake), "input_rows": input_rows, "slice_rows": slice_rows},
                    "clusters": [ingest], "vcpus": {"standard_at_once": ingest["vcpus"], "gpu_at_once": 0,
                                                    "quotas": _quota_table(quotas)},
                    "cost": dict(ingest["cost"]), "checks": checks})


def _account(target: str, account: Account | None, cfg: dict, locations: dict[str, str],
             train: bool) -> tuple[dict, list[Check]]:
    """(the vCPU quotas with where each comes from, the account's checks): asked of AWS on the aws target;
    on the local target the documented quotas, and nothing to check."""
    if target != "aws":
        return {k: (v, "docs/aws.md's figure (local target: the account is not asked)")
                for k, v in prices.DEFAULT_QUOTAS.items()}, []
    account = account or Account()
    return {k: account.quota(k) for k in ("standard", "gpu")}, account_checks(account, cfg, locations, train)


def _quota_table(quotas: dict) -> dict:
    return {k: {"vcpus": v, "from": src} for k, (v, src) in quotas.items()}


def _table_rows(lake: Lake) -> dict:
    """Rows of each table the catalog holds (current snapshots; nothing read but metadata)."""
    return {"tables": {t["table"].split(".", 1)[1]: t["rows"] for t in catalog.describe(lake)}}


def _finish(plan: dict) -> dict:
    plan["checks"] = [asdict(c) for c in plan["checks"]]
    plan["ok"] = all(c["ok"] for c in plan["checks"])
    plan["made_at"] = datetime.now(timezone.utc).isoformat()
    plan["prices"] = {"region": prices.REGION, "date": prices.DATE, "spot_share": prices.SPOT_SHARE}
    plan["rates"] = {k: {"value": v, "from": src} for k, (v, src) in prices.RATES.items()}
    return plan


def text(plan: dict) -> str:
    """The plan as a person reads it."""
    lines = [f"{plan['kind']} plan for {plan['lake']} ({plan.get('profile', '-')} profile, {plan['target']} target)"]
    data = plan["data"]
    if plan["kind"] == "model":
        lines += [f"  photos      {data['photos']:,} of {data['faces_rows']:,} in faces ({data['image_set']}, sample "
                  f"{data['sample'] or 'all'}): train {data['split']['train']:,}, val {data['split']['val']:,}, "
                  f"test {data['split']['test']:,} (by {data['split_by']})",
                  "  classes     " + ", ".join(f"{p['name']} {p['classes']:,}" for p in plan["partitionings"])
                  + f" (taus sized for {plan['partitionings'][0]['sized_for']:,} photos)",
                  f"  model       {plan['model']['backbone']}, {plan['model']['parameters']:,} parameters, checkpoint "
                  f"{plan['model']['checkpoint_bytes'] / 1e9:.2f} GB",
                  f"  shards      {plan['shards']['per_photo'] / 1e3:,.0f} KB a photo (measured on "
                  f"{plan['shards']['sampled']} images), {plan['shards']['total_bytes'] / 1e9:,.1f} GB",
                  f"  training    {plan['training']['instance_type']}, {plan['training']['epochs']} epochs, "
                  f"{plan['training']['input_images_s']['expected']:,} images/s, {plan['training']['hours']:,.1f} h, "
                  f"disk {plan['training']['disk_needed_gb']:,.0f} of {plan['training']['volume_gb']} GB",
                  "  table 4     " + (f"{data['removal_effect']['photos_to_predict']:,} full test photos predicted again "
                                      f"(paired with run {data['removal_effect']['pair_with']})"
                                      if data["removal_effect"]["pair_with"] else
                                      "nothing (no run of the other image set to pair with yet)")]
    else:
        lines.append(f"  rows        {data['input_rows']:,} to parse, {data['slice_rows']:,} in the slice")
    for c in plan["clusters"]:
        nodes = " + ".join(f"{n['count']} x {n['type']}{' (spot)' if n['spot'] else ''}" for n in c["nodes"])
        lines.append(f"  cluster     {c['name']:<7} {nodes}: {c['vcpus']} vCPUs, {c['hours']:,.2f} h, "
                     f"${c['cost']['on_demand']:,.2f} (with spot ${c['cost']['with_spot']:,.2f})")
    lines.append(f"  cost        ${plan['cost']['on_demand']:,.2f} on demand, ${plan['cost']['with_spot']:,.2f} with spot "
                 f"({plan['prices']['region']} prices of {plan['prices']['date']})")
    for c in plan["checks"]:
        lines.append(f"  {'ok    ' if c['ok'] else 'FAILED'}      {c['name']}: {c['message']}")
    return "\n".join(lines)


def keep(lake: Lake, plan: dict, dag: str, run: str) -> str:
    """Store a plan under ``plans/<dag>/<run>.json``; its location."""
    return lake.write_json(f"plans/{dag}/{run}.json", json.loads(json.dumps(plan, default=str)))


def input_rows(lake: Lake, inputs: list[str], probe: int = 8 << 20) -> int:
    """Lines of the input files the parse step has not parsed yet, estimated from each file's size and
    the lines in its first ``probe`` bytes (decompressed as the reader does: bz2, gzip or plain)."""
    import bz2

    from deeploc.sources.line_source import list_inputs
    from deeploc.stages import parse
    from deeploc.storage.uris import filesystem

    total = 0
    for file in list_inputs(inputs):
        known = f"{parse.SOURCES}/{parse.source_id(file.path)}.json"
        if not parse.changed(lake.read_json_or_none(known), file):
            continue
        fs, path = filesystem(file.path)
        with fs.open_input_stream(path, compression=None) as f:
            head = f.read(probe)
        if head[:3] == b"BZh":
            text = bz2.BZ2Decompressor().decompress(head)
        elif head[:2] == b"\x1f\x8b":
            text = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        else:
            text = head
        total += int(text.count(b"\n") / max(1, len(head)) * file.size) if head else 0
    return total


def slice_share(rows: int, sl) -> int:
    """The rows of a slice before the parse step has placed them: YFCC100M's rows spread evenly over its
    132 months of upload time (2004-2014)."""
    months = 132 if sl.start is None or sl.end is None else \
        max(0, (sl.end.year - sl.start.year) * 12 + sl.end.month - sl.start.month)
    return int(rows * min(1.0, months / 132))
