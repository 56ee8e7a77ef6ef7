"""Partition stage: ``faces/`` -> ``partitions/<dataset>/``.

Chooses the data set (``full``, or ``removal``: images with a face ratio at or below the threshold),
splits it deterministically (test / train / val by a hash of the photo id), builds the adaptive S2
partitionings from the training split only, labels train and val images, and links every fine class
to its coarser parents. Written to a staging folder and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from deeploc import partitioning, s2, splits
from deeploc.lake import PARTITION, UNKNOWN, Lake
from deeploc.stages.faces import REMOVAL_THRESHOLD, removal_filter

log = logging.getLogger(__name__)

DATASETS = ("full", "removal")
COLUMNS = ["photo_id", "object_key", "latitude", "longitude", "face_ratio", "title", "page_url", "license_name"]


def read_faces(lake: Lake) -> pd.DataFrame:
    if not lake.partitions("faces"):
        raise FileNotFoundError(f"partition: no faces table under {lake.path('faces')}; run the ingestion DAG first")
    table = lake.dataset(lake.path("faces"), format="parquet", partitioning="hive")
    return table.to_table(columns=COLUMNS, filter=ds.field(PARTITION) != UNKNOWN).to_pandas()


def choose(df: pd.DataFrame, dataset: str, threshold: float) -> pd.DataFrame:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return df if dataset == "full" else df.query(removal_filter(threshold))


def report_markdown(report: dict) -> str:
    """Classes per partitioning (the shape of the report's Table 3), class sizes, unassigned images."""
    lines = [f"# Partitions of the {report['dataset']} data set", "",
             f"{report['images']} images ({report['removed_by_faces']} removed by faces); split {report['split']}.", "",
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


def run(lake_root: str, dataset: str = "full", spec: str | None = None, face_threshold: float = REMOVAL_THRESHOLD,
        test_fraction: float = 0.2, val_fraction: float = 0.2) -> dict:
    lake = Lake(lake_root)
    specs = partitioning.Spec.parse(spec) if spec else [partitioning.Spec(*s) for s in partitioning.DEFAULT_SPEC]
    faces = read_faces(lake)
    df = choose(faces, dataset, face_threshold).reset_index(drop=True)
    df["split"] = splits.assign(df["photo_id"].to_numpy(), test_fraction, val_fraction)
    train = (df["split"] == "train").to_numpy()
    lat, lon = df["latitude"].to_numpy(float), df["longitude"].to_numpy(float)
    leaf = s2.leaf_ids(lat, lon)

    tables, report = {}, {"dataset": dataset, "face_threshold": face_threshold, "images": len(df),
                          "removed_by_faces": len(faces) - len(df),
                          "split": {k: int((df["split"] == k).sum()) for k in splits.SPLITS},
                          "partitionings": []}
    for s in specs:
        table, train_labels = partitioning.build(lat[train], lon[train], s, leaf[train])
        tables[s.name] = table
        # Train images keep the class they were counted in; val and test are located in the cells.
        labels = partitioning.locate_leaves(table, leaf)
        labels[train] = train_labels
        df[f"label_{s.name}"] = labels
        counts = table["count"].to_numpy()
        report["partitionings"].append({
            "name": s.name, "tau_min": s.tau_min, "tau_max": s.tau_max, "classes": len(table),
            "levels": sorted(int(v) for v in table["level"].unique()),
            "images_per_class": ({"min": int(counts.min()), "median": float(np.median(counts)),
                                  "max": int(counts.max())} if len(counts) else {}),
            "unassigned_train": int((train_labels < 0).sum()),
            "unassigned_val": int(((labels < 0) & (df["split"] == "val").to_numpy()).sum())})
        log.info("partition %s (tau %d/%d): %d classes, %d training images in no cell", s.name, s.tau_min,
                 s.tau_max, len(table), int((train_labels < 0).sum()))
    hier = partitioning.hierarchy(tables, [s.name for s in specs])
    report["hierarchy_unresolved"] = int((hier.to_numpy() < 0).sum())

    out = lake.path("partitions", dataset)
    report["order"] = [s.name for s in specs]
    with lake.building(f"partitions/{dataset}") as tmp:
        pd.concat(tables.values(), ignore_index=True).to_parquet(os.path.join(tmp, "cells.parquet"), index=False)
        hier.to_parquet(os.path.join(tmp, "hierarchy.parquet"), index=False)
        df.to_parquet(os.path.join(tmp, "labels.parquet"), index=False)
        with open(os.path.join(tmp, "report.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(tmp, "report.md"), "w") as f:
            f.write(report_markdown(report))
    log.info("partition [%s]: %d images (%s), written to %s", dataset, len(df), report["split"], out)
    return report
