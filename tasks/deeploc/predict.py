"""Turning images into locations with a trained run: per-partitioning and hierarchical predictions."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pandas as pd

from deeploc import geo

HIERARCHY = "hierarchy"


class Predictor:
    """A trained run from ``models/<run>/``: the network, its cells and the fine->coarse hierarchy."""

    def __init__(self, model_dir: str):
        import keras

        with open(os.path.join(model_dir, "summary.json")) as f:
            self.summary = json.load(f)
        self.order: list[str] = self.summary["order"]
        self.input_size: int = self.summary["profile"]["input_size"]
        self.model = keras.models.load_model(os.path.join(model_dir, "model.keras"), compile=False)
        cells = pd.read_parquet(os.path.join(model_dir, "cells.parquet"))
        self.cells = {p: cells[cells["partitioning"] == p].sort_values("class") for p in self.order}
        self.hier = pd.read_parquet(os.path.join(model_dir, "hierarchy.parquet"))

    @property
    def outputs(self) -> list[str]:
        return [*self.order, HIERARCHY]

    def probabilities(self, batch: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Softmax per head, and the hierarchical score p_fine * p_parent(medium) * p_parent(coarse)."""
        probs = self.model.predict(batch.astype(np.float32), batch_size=batch_size, verbose=0)
        probs = {p: np.asarray(probs[p]) for p in self.order}
        fine = self.order[-1]
        h = probs[fine].copy()
        for p in self.order[:-1]:
            parent = self.hier[p].to_numpy()
            # A fine cell whose mean lies in no coarser cell gets no hierarchical score.
            h *= np.where(parent >= 0, probs[p][:, np.maximum(parent, 0)], 0.0)
        probs[HIERARCHY] = h
        return probs

    def locations(self, probs: dict[str, np.ndarray], k: int = 5) -> dict[str, dict[str, np.ndarray]]:
        """Per output: predicted class, its mean lat/lon, and the top-k classes with probabilities."""
        out = {}
        for name, p in probs.items():
            cells = self.cells[self.order[-1] if name == HIERARCHY else name]
            kk = min(k, p.shape[1])
            top = np.argsort(-p, axis=1)[:, :kk]
            best = top[:, 0]
            out[name] = {"class": best, "lat": cells["mean_lat"].to_numpy()[best],
                         "lon": cells["mean_lon"].to_numpy()[best],
                         "topk_class": top, "topk_prob": np.take_along_axis(p, top, axis=1)}
        return out


@functools.lru_cache(maxsize=2)
def cached(lake_root: str, run_name: str) -> Predictor:
    """One predictor per Python worker process (Spark reuses workers across tasks); on an S3 lake
    each worker downloads the run's model once."""
    from deeploc.lake import Lake

    return Predictor(Lake(lake_root).download(f"models/{run_name}"))


def distances(locs: dict[str, dict[str, np.ndarray]], lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    return {name: geo.haversine_km(lat, lon, v["lat"], v["lon"]) for name, v in locs.items()}
