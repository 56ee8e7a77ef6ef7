"""Evaluate stage: ``predictions/<run>/`` -> ``metrics/<run>/`` (the shape of the report's Table 7).

Accuracy at 1 / 25 / 200 / 750 / 2500 km and the median error for every partitioning and the
hierarchy, beside the bar to clear: always answering the most frequent training cell.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from deeploc import commit, geo, runs
from deeploc.lake import Lake
from deeploc.predict import HIERARCHY

log = logging.getLogger(__name__)
PRIOR = "prior (most frequent cell)"


def accuracy_table(pred: pd.DataFrame, outputs: list[str], prior_latlon: tuple[float, float] | None) -> pd.DataFrame:
    rows = [{"method": o, **geo.accuracy(pred[f"{o}_km"].to_numpy(float))} for o in outputs]
    if prior_latlon is not None:
        d = geo.haversine_km(pred["latitude"].to_numpy(float), pred["longitude"].to_numpy(float), *prior_latlon)
        rows.append({"method": PRIOR, **geo.accuracy(d)})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    cols = [c for c in table.columns if c.endswith("km") and c != "median_km"]
    head = "| method | " + " | ".join(cols) + " | median km | n |"
    sep = "|" + "---|" * (len(cols) + 3)
    lines = [head, sep]
    for _, r in table.iterrows():
        cells = " | ".join(f"{100 * r[c]:.1f} %" for c in cols)
        lines.append(f"| {r['method']} | {cells} | {r['median_km']:.0f} | {int(r['n'])} |")
    return "\n".join(lines) + "\n"


def run(lake: str, run: str | None = None) -> dict:
    """Accuracy of a run's predictions; publish ``metrics/<run>/``."""
    lake = Lake(lake)
    run_name = runs.resolve(lake, run)
    pred_dir = lake.path("predictions", run_name)
    if not lake.exists(pred_dir):
        raise FileNotFoundError(f"evaluate: no predictions under {pred_dir}; run infer first")
    pred = lake.read_parquet(pred_dir)
    summary = lake.read_json(f"models/{run_name}/summary.json")
    order = summary["order"]
    cells = lake.read_parquet(lake.path("models", run_name, "cells.parquet"))
    fine = cells[cells["partitioning"] == order[-1]]
    top = fine.loc[fine["count"].idxmax()] if len(fine) else None
    table = accuracy_table(pred, [*order, HIERARCHY], None if top is None else (top["mean_lat"], top["mean_lon"]))

    metrics = {"run": run_name, "image_set": summary["image_set"], "images": int(len(pred)),
               "table": table.replace({np.nan: None}).to_dict(orient="records")}
    with commit.building(lake, f"metrics/{run_name}") as out:
        table.to_csv(os.path.join(out, "accuracy.csv"), index=False)
        with open(os.path.join(out, "accuracy.md"), "w") as f:
            f.write(markdown(table))
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True, default=str)
    log.info("evaluate [%s]: %d predictions\n%s", run_name, len(pred), markdown(table))
    return metrics
