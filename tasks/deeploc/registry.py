"""The stages, declared once: name, options, the tables each reads and writes, where it runs on AWS,
and the function that runs it. The command line (``deeploc <stage> ...``), the Airflow operators'
argument lists and both DAG lanes are derived from these declarations.

Adding a stage: a module under ``deeploc/stages/`` with a ``run(**options)`` function, and one
``Stage(...)`` entry below. Adding an option: one ``Option(...)`` in its stage's entry (``form=`` to
offer it in the model DAG's trigger form). Nothing here imports a stage, Spark or TensorFlow: DAG parsing and
``deeploc --help`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """One ``--flag`` of a stage; ``name`` is also the keyword its ``run`` function takes."""

    name: str
    help: str
    type: Any = str                 # argparse type; bool: a bare switch
    default: Any = None
    required: bool = False
    choices: tuple = ()
    many: bool = False              # one or more values (nargs="+")
    setting: str | None = None      # filled by the orchestrator from this setting (see deeploc_airflow.settings)
    minimum: float | None = None    # inclusive bounds of a number
    maximum: float | None = None
    form: str | None = None         # the model DAG's trigger form offers it, in this section: "what" or "model"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.type is bool:
            parser.add_argument(self.flag, dest=self.name, action="store_true", help=self.help)
            return
        kw: dict[str, Any] = {"dest": self.name, "type": self._checked, "help": self.help, "required": self.required}
        if self.default is not None:
            kw["default"] = self.default
            kw["help"] = f"{self.help} (default {self.default})"
        if self.choices:
            kw["choices"] = self.choices
        if self.many:
            kw["nargs"] = "+"
        parser.add_argument(self.flag, **kw)

    def _checked(self, text: str):
        """The value of ``text``, refused (argparse says why) outside the bounds."""
        value = self.type(text)
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise argparse.ArgumentTypeError(f"{text} is outside [{self.minimum}, {self.maximum}]")
        return value


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    runner: str                                  # "module:function"
    options: tuple[Option, ...]
    reads: tuple[str, ...] = ()                  # lake tables (folders under the root)
    writes: tuple[str, ...] = ()
    # Where the aws target runs it: "cluster" (an EMR step over core nodes), "primary" (an EMR step
    # whose work stays on the primary node: no core nodes needed), "gpu_instance" (the training instance).
    runs_on: str = "cluster"
    gpu_workers: bool = False                    # aws: the cluster's core nodes are GPU instances
    tensorflow: bool = False                     # aws: its nodes install TensorFlow (the package's cpu / gpu extra)
    settings: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "settings", tuple(o.setting for o in self.options if o.setting))

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def run(self, **kwargs):
        module, func = self.runner.split(":")
        return getattr(importlib.import_module(module), func)(**_combined(kwargs))


def _combined(kwargs: dict) -> dict:
    """Options that travel as one value: the image bucket and how to reach it become a ``Bucket``."""
    if "bucket" in kwargs:
        from deeploc.sources.bucket import Bucket

        kwargs = dict(kwargs)
        kwargs["bucket"] = Bucket.of(kwargs.pop("bucket"), kwargs.pop("unsigned", False),
                                     kwargs.pop("endpoint_url", None))
    return kwargs


# -- option groups shared by several stages -----------------------------------------------------------
LAKE = Option("lake", "lake root: a local folder or s3://bucket/prefix", required=True, setting="lake")
SLICE = (Option("start", "slice start (ISO date of a month start, UTC); omit for no lower bound"),
         Option("end", "slice end, exclusive (ISO date of a month start, UTC); omit for no upper bound"))
BUCKET = (Option("bucket", "image bucket: a local folder laid out like s3://multimedia-commons/, or "
                           "s3://bucket[/prefix]", required=True, setting="bucket"),
          Option("unsigned", "anonymous S3 requests (the public multimedia-commons bucket)", bool),
          Option("endpoint_url", "S3-compatible endpoint (default: AWS, or DEEPLOC_S3_ENDPOINT_URL)"))
RUN = Option("run", "model run name (default: the latest, models/LATEST.json)")
IMAGE_SET = Option("image_set", "full: every image; removal: images whose face ratio is at most the threshold",
                   default="full", choices=("full", "removal"), form="what")
CROPS = Option("crops", "test-time crops per photo: 1 (centre) or 5 (centre and corners)", int, 1, choices=(1, 5),
               form="model")
PROFILE = Option("profile", "model profile: demo (small CNN, 64 px), yfcc (the report: ResNet101V2, 224 px, a "
                            "154,052-photo sample) or mp16 (the reference scale: 4.7M photos, ResNet-50)",
                 default="demo", choices=("demo", "yfcc", "mp16"), setting="profile", form="what")

STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("parse", "raw YFCC100M metadata files -> parsed/ (typed, by upload month; once per changed file)",
          "deeploc.stages.parse:run", (
              Option("input", "metadata files, folders or globs, local or s3:// (bz2, gzip or plain)", many=True,
                     required=True, setting="metadata"),
              LAKE,
              Option("layout", "force the column layout (default: detect per file)", int, choices=(23, 25)),
              Option("chunk_mb", "bytes per Spark task when reading (MB; smaller for more cores)", int, 64),
              Option("prune", "remove the rows of files parsed earlier that are no longer among the inputs", bool)),
          writes=("parsed", "rejects/parse")),
    Stage("metadata", "parsed/ -> metadata/ (clean geotagged photos, object keys) for one upload-time slice",
          "deeploc.stages.metadata:run", (LAKE, *SLICE),
          reads=("parsed",), writes=("metadata", "rejects/metadata")),
    Stage("availability", "metadata/ + a listing of the image bucket -> images/ for one slice",
          "deeploc.stages.availability:run", (
              LAKE, *BUCKET, *SLICE,
              Option("min_bytes", "smallest usable object", int, 1024),
              Option("check", "list prefixes, one HEAD request per object, or choose by request count",
                     default="auto", choices=("auto", "list", "head")),
              Option("objects_per_prefix", "estimated objects per prefix in the bucket, for --check auto",
                     int, 24_400),
              Option("listing_max_age", "hours a kept S3 listing of a prefix is reused by later slices",
                     float, 720.0)),
          reads=("metadata",), writes=("images", "rejects/availability")),
    Stage("faces", "images/ + image bytes -> faces/ with the face ratio, for one slice (OpenCV)",
          "deeploc.stages.faces:run", (LAKE, *BUCKET, *SLICE),
          reads=("images",), writes=("faces", "rejects/faces")),
    Stage("partitioning", "faces/ -> partitionings/<image set>/ (S2 cells, classes, hierarchy, split)",
          "deeploc.stages.partitioning:run", (
              LAKE, PROFILE, IMAGE_SET,
              Option("face_threshold", "face ratio above which the removal set drops an image", float, 0.035,
                     minimum=0, maximum=1, form="what"),
              Option("partitionings", "name:tau_min:tau_max,... coarse to fine (default: the profile's)", form="what"),
              Option("test_fraction", "share of photos held out for inference and evaluation", float, 0.2,
                     minimum=0, maximum=1),
              Option("val_fraction", "share of the rest used for validation", float, 0.2, minimum=0, maximum=1),
              Option("split_by", "user: a user's photos stay together (no near-duplicates on both sides); "
                                 "photo: the report's split by photo id", default="user", choices=("user", "photo"),
                     form="what"),
              Option("max_images", "a stable, seeded sample of at most this many photos (default: the profile's; "
                                   "the yfcc profile's is the report's 154,052)", int, minimum=1, form="what"),
              Option("seed", "the sample's seed", int, 0)),
          reads=("faces",), writes=("partitionings",), runs_on="primary"),
    Stage("shards", "the train and val photos of an image set, resized once -> shards/<image set>/ (TFRecord)",
          "deeploc.stages.shards:run", (LAKE, *BUCKET, IMAGE_SET, PROFILE,
                                        Option("val_max", "validation photos kept: a stable sample of at most this many "
                                                          "(the reference used 25,000)", int, 25_000, minimum=1)),
          reads=("partitionings",), writes=("shards", "rejects/shards")),
    Stage("train", "partitionings/<image set>/ + images -> models/<run>/ (TensorFlow)",
          "deeploc.stages.train:run", (
              LAKE, *BUCKET, Option("run", "model run name; the same command after a kill resumes it", required=True),
              IMAGE_SET, PROFILE,
              Option("epochs", "training epochs (default: the profile's)", int, minimum=1, form="model"),
              Option("backbone", "small_cnn, efficientnet_lite0, or a keras.applications name (default: the profile's)",
                     form="model"),
              Option("weights", "imagenet, a weights file (a local path or an s3:// URI), or none (default: the profile's)"),
              Option("learning_rate", "peak learning rate (default: the profile's)", float, minimum=0, form="model"),
              Option("batch_size", "images per step (default: the profile's)", int, minimum=1, form="model"),
              Option("schedule", "cosine (linear warm-up, then cosine decay), step (halved at epochs 4, 8 and 12) "
                                 "or constant (default: the profile's)", choices=("cosine", "step", "constant")),
              Option("optimizer", "adam, or sgd with momentum 0.9 (default: the profile's)", choices=("adam", "sgd")),
              Option("weight_decay", "decoupled weight decay (default: the profile's)", float, minimum=0),
              Option("warmup_epochs", "epochs of linear warm-up (default: the profile's)", float, minimum=0),
              Option("input", "shards (prepared by deeploc shards) or images (read every epoch: tiny sets only)",
                     default="shards", choices=("shards", "images")),
              Option("shard_cache_gb", "an S3 lake's training shards stream through a local cache of this size (GB)",
                     float, 50.0, minimum=4),
              Option("any_partitionings", "train on partitionings built for another profile", bool)),
          reads=("partitionings", "shards"), writes=("models",), runs_on="gpu_instance", tensorflow=True),
    Stage("infer", "models/<run>/ + images -> predictions/<run>/ (Spark + TensorFlow)",
          "deeploc.stages.infer:run", (
              LAKE, *BUCKET, RUN,
              Option("split", "which photos of the model's image set to predict", default="test",
                     choices=("train", "val", "test")),
              Option("photos", "predict these photos instead: a Parquet table (photo_id or object_key) or a text "
                               "file of photo ids or object keys, local or s3://"),
              Option("top_k", "cells kept per output with their probabilities", int, 5), CROPS,
              Option("name", "the predictions' name in the table (default: the run)")),
          reads=("models", "partitionings"), writes=("predictions", "rejects/infer"), gpu_workers=True,
          tensorflow=True),
    Stage("evaluate", "predictions/<run>/ -> metrics/<run>/ (accuracy at 1 / 25 / 200 / 750 / 2500 km)",
          "deeploc.stages.evaluate:run", (LAKE, RUN),
          reads=("predictions", "models"), writes=("metrics",), runs_on="primary"),
    Stage("removal_effect", "the full and removal models on the full run's test photos, with and without faces "
                            "(the report's Table 4) -> comparisons/removal_effect/",
          "deeploc.stages.removal_effect:run", (LAKE, *BUCKET, RUN, CROPS),
          reads=("models", "predictions", "faces"), writes=("predictions", "rejects/infer", "comparisons"),
          gpu_workers=True, tensorflow=True),
    Stage("publish", "predictions + metrics -> site/ (the web map)",
          "deeploc.stages.publish:run", (
              LAKE, *BUCKET, RUN,
              Option("pool", "photos the page draws its 100 at a time from (each with a thumbnail)", int, 1000),
              Option("tiles", "an http(s) tile URL template for a background map online (default: none, offline)")),
          reads=("predictions", "metrics", "models"), writes=("site",), runs_on="primary"),
]}


def get(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGES)}")
    return STAGES[name]


def writer_of(table: str) -> str:
    """The stage that writes ``table`` (for messages such as 'run availability first')."""
    return next((s.name for s in STAGES.values() if table in s.writes), "the stage that writes it")
