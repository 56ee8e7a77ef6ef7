"""Partitioning stage: ``faces/`` -> ``partitionings/<image set>/``.

Chooses the image set (``full``, or ``removal``: images with a face ratio at or below the threshold),
optionally a stable sample of it (``max_images``), splits it deterministically (test / train / val by a
hash of the user id, or of the photo id: ``deeploc.learn.splits``), builds the adaptive S2
partitionings from the training split only, gives train and val images their class in each, and links
every fine class to its coarser parents. Published whole (``deeploc.storage.commit``).

Files: ``cells.parquet`` (one row per class of every partitioning), ``hierarchy.parquet``,
``photos.parquet`` (each photo's split and classes; -1 where it lies in no cell), ``report.json`` / ``.md``.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from deeploc.earth import partitioning, s2
from deeploc.learn import profiles, splits
from deeploc.storage import catalog, commit
from deeploc.storage.lake import Lake
from deeploc.storage.tables import IMAGE_SETS, removal_filter, REMOVAL_THRESHOLD

log = logging.getLogger(__name__)

COLUMNS = ["photo_id", "object_key", "latitude", "longitude", "face_ratio", "title", "page_url", "license_name",
           "license_url", "user_nsid", "user_nickname"]


def read_faces(lake: Lake) -> tuple[pd.DataFrame, int]:
    """The columns the model half needs from the current snapshot of ``faces``, and that snapshot's id."""
    return catalog.read(lake, "faces", COLUMNS, writer="the ingestion DAG")


def choose(df: pd.DataFrame, image_set: str, threshold: float) -> pd.DataFrame:
    if image_set not in IMAGE_SETS:
        raise ValueError(f"image set must be one of {IMAGE_SETS}, got {image_set!r}")
    return df if image_set == "full" else df.query(removal_filter(threshold))


def select(faces: pd.DataFrame, image_set: str, threshold: float, max_images: int | None, seed: int,
           split_by: str, test_fraction: float = 0.2, val_fraction: float = 0.2) -> pd.DataFrame:
    """The photos a run trains and tests on: the image set, its stable sample, each photo's split.
    ``deeploc plan`` sizes a run with the same choice."""
    chosen = choose(faces, image_set, threshold)
    df = chosen[splits.sample(chosen["photo_id"], max_images, seed)].reset_index(drop=True)
    df["split"] = splits.split(df, split_by, test_fraction, val_fraction)
    return df


def report_markdown(report: dict) -> str:
    """Classes per partitioning (the shape of the report's Table 3), class sizes, unassigned images."""
    rule = report["split_rule"]
    lines = [f"# Partitionings of the {report['image_set']} image set", "",
             f"{report['images']} images ({report['removed_by_faces']} removed by faces, "
             f"{report['left_out_by_sample']} left out by the sample); split by {rule['by']} "
             f"(test {rule['test_fraction']}, then val {rule['val_fraction']} of the rest): {report['split']}.", "",
             "| partitioning | tau_min | tau_max | classes | S2 levels | images per class (min / median / max) "
             "| training images in no cell |", "|---|---|---|---|---|---|---|"]
    for p in report["partitionings"]:
        sizes = p["images_per_class"]
        size_text = f"{sizes['min']} / {sizes['median']:g} / {sizes['max']}" if sizes else "-"
        levels = f"{min(p['levels'])}-{max(p['levels'])}" if p["levels"] else "-"
        lines.append(f"| {p['name']} | {p['tau_min']} | {p['tau_max']} | {p['classes']} | {levels} | {size_text} "
                     f"| {p['unassigned_train']} |")
    lines += ["", f"Fine classes whose mean lies in no coarser cell: {report['hierarchy_unresolved']}.", ""]
    return "\n".join(lines)


def run(lake: str, image_set: str = "full", profile: str = "demo", partitionings: str | None = None,
        face_threshold: float = REMOVAL_THRESHOLD, test_fraction: float = 0.2, val_fraction: float = 0.2,
        split_by: str = "user", max_images: int | None = None, seed: int = 0) -> dict:
    """Build the partitionings of an image set (``partitionings``: the profile's unless given)."""
    lake = Lake(lake)
    spec = partitionings or profiles.get(profile).partitionings
    specs = partitioning.Spec.parse(spec)
    faces, snapshot = read_faces(lake)
    max_images = max_images if max_images is not None else profiles.get(profile).sample
    df = select(faces, image_set, face_threshold, max_images, seed, split_by, test_fraction, val_fraction)
    in_set = len(choose(faces, image_set, face_threshold))
    train = (df["split"] == "train").to_numpy()
    lat, lon = df["latitude"].to_numpy(float), df["longitude"].to_numpy(float)
    leaf = s2.leaf_ids(lat, lon)

    tables, report = {}, {"image_set": image_set, "profile": profile, "spec": spec, "face_threshold": face_threshold,
                          "faces_snapshot": snapshot,
                          "images": len(df), "removed_by_faces": len(faces) - in_set,
                          "left_out_by_sample": in_set - len(df), "max_images": max_images, "seed": seed,
                          "split_rule": {"by": split_by, "test_fraction": test_fraction, "val_fraction": val_fraction},
                          "split": {k: int((df["split"] == k).sum()) for k in splits.SPLITS},
                          "partitionings": []}
    for s in specs:
        table, train_classes = partitioning.build(lat[train], lon[train], s, leaf[train])
        tables[s.name] = table
        # Train images keep the class they were counted in; val and test are located in the cells.
        classes = partitioning.locate_leaves(table, leaf)
        classes[train] = train_classes
        df[f"class_{s.name}"] = classes
        counts = table["count"].to_numpy()
        report["partitionings"].append({
            "name": s.name, "tau_min": s.tau_min, "tau_max": s.tau_max, "classes": len(table),
            "levels": sorted(int(v) for v in table["level"].unique()),
            "images_per_class": ({"min": int(counts.min()), "median": float(np.median(counts)),
                                  "max": int(counts.max())} if len(counts) else {}),
            "unassigned_train": int((train_classes < 0).sum()),
            "unassigned_val": int(((classes < 0) & (df["split"] == "val").to_numpy()).sum())})
        log.info("partitioning %s (tau %d/%d): %d classes, %d training images in no cell", s.name, s.tau_min,
                 s.tau_max, len(table), int((train_classes < 0).sum()))
    hier = partitioning.hierarchy(tables, [s.name for s in specs])
    report["hierarchy_unresolved"] = int((hier.to_numpy() < 0).sum())

    report["order"] = [s.name for s in specs]
    with commit.building(lake, f"partitionings/{image_set}") as tmp:
        pd.concat(tables.values(), ignore_index=True).to_parquet(os.path.join(tmp, "cells.parquet"), index=False)
        hier.to_parquet(os.path.join(tmp, "hierarchy.parquet"), index=False)
        df.to_parquet(os.path.join(tmp, "photos.parquet"), index=False)
        with open(os.path.join(tmp, "report.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(tmp, "report.md"), "w") as f:
            f.write(report_markdown(report))
    log.info("partitioning [%s]: %d images (%s) -> %s", image_set, len(df), report["split"],
             commit.current(lake, f"partitionings/{image_set}"))
    return report
