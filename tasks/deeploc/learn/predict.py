"""From pixels to places with a trained run: the probabilities of every partitioning's cells, the
hierarchy's, optional test-time crops, the top-k cells of each output with their locations, and, where
the run has a kNN index, the hierarchy's answer refined among similar training photos (``hierarchy_knn``).

``Predictor`` is what the Spark inference job, ``deeploc predict`` and ``deeploc serve`` share, so a photo
gets the same answer wherever it is predicted.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pandas as pd

from deeploc.earth import geo
from deeploc.earth.partitioning import Partitionings
from deeploc.learn import calibration, knn
from deeploc.sources import images

HIERARCHY = "hierarchy"
KNN = "hierarchy_knn"      # the hierarchy's cells, its place refined by the nearest training photos
EMBEDDING = "embedding"    # the layer before the outputs, travels with the probabilities when there is an index
CROPS = (1, 5)  # the centre crop; or GeoEstimation's test-time crops: centre and four corners


def hierarchy_scores(probs: dict[str, np.ndarray], order: list[str], parents: pd.DataFrame) -> np.ndarray:
    """p_fine * p_medium(parent) * p_coarse(parent) for each fine cell, renormalised to sum to 1 per photo
    (a fine cell whose mean lies in no coarser cell scores 0). The ranking is the product's."""
    h = probs[order[-1]].astype(np.float64).copy()
    for p in order[:-1]:
        parent = parents[p].to_numpy()
        h *= np.where(parent >= 0, probs[p][:, np.maximum(parent, 0)], 0.0)
    total = h.sum(axis=1, keepdims=True)
    return np.divide(h, total, out=np.zeros_like(h), where=total > 0)


def crops_of(square: np.ndarray, side: int, n: int) -> list[np.ndarray]:
    """``n`` crops of ``side`` from the evaluation-scale square: the centre (n=1), or centre and corners."""
    if n == 1:
        return [images.centre_crop(square, side)]
    big = square.shape[0]
    corners = [(0, 0), (0, big - side), (big - side, 0), (big - side, big - side)]
    return [images.centre_crop(square, side)] + [square[t:t + side, left:left + side] for t, left in corners]


def _with_embedding(net, order: list[str]):
    import keras

    return keras.Model(net.inputs, {**{p: net.get_layer(p).output for p in order},
                                    EMBEDDING: net.get_layer(order[0]).input})


def outputs_of(summary: dict) -> list[str]:
    """A run's outputs, coarse to fine: its partitionings, the hierarchy and, with an index, its kNN refinement."""
    return [*summary["order"], HIERARCHY, *([KNN] if summary.get("knn") else [])]


class Predictor:
    """A trained run: the network, its partitionings (cells and hierarchy), the fitted temperatures and,
    where the run has one, its kNN index. ``Predictor.load(models/<run>/)`` reads one from disk."""

    def __init__(self, summary: dict, net, partitionings: Partitionings, temperature: dict[str, float] | None = None,
                 refiner: knn.Refiner | None = None):
        self.summary = summary
        self.order: list[str] = list(summary["order"])
        self.input_size: int = summary["profile"]["input_size"]
        self.partitionings = partitionings
        self.cells = {p: partitionings.of(p) for p in self.order}   # row i: class i (looked up per photo)
        self.temperature = temperature or {}
        self.knn = refiner
        # With an index, the network also answers its embedding (the Dense outputs' shared input).
        self.model = net if refiner is None else _with_embedding(net, self.order)

    @classmethod
    def load(cls, model_dir: str) -> "Predictor":
        from deeploc.learn import model

        with open(os.path.join(model_dir, "summary.json")) as f:
            summary = json.load(f)
        temperature = {}
        fitted = os.path.join(model_dir, calibration.FILE)
        if os.path.exists(fitted):  # runs trained before calibration have none
            with open(fitted) as f:
                temperature = {p: v["temperature"] for p, v in json.load(f).items()}
        return cls(summary, model.load(os.path.join(model_dir, "model.keras")),
                   Partitionings.read(model_dir, summary["order"]), temperature, knn.Refiner.load(model_dir))

    @property
    def outputs(self) -> list[str]:
        return outputs_of(self.summary)

    def cells_of(self, output: str) -> pd.DataFrame:
        """The cells an output's classes index: the hierarchy's (and its refinement's) are the finest partitioning's."""
        return self.cells[self.order[-1] if output in (HIERARCHY, KNN) else output]

    def prepare(self, rgb: np.ndarray, crops: int = 1) -> np.ndarray:
        """An image as the network's input: (crops, side, side, 3) uint8 from the evaluation transform."""
        square = images.resize_square(rgb, images.eval_side(self.input_size))
        return np.stack(crops_of(square, self.input_size, crops))

    def probabilities(self, batch: np.ndarray, crops: int = 1, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Softmax per partitioning for a batch of prepared images ((photos * crops), side, side, 3),
        combined over each photo's crops by the element-wise maximum (GeoEstimation's rule), renormalised
        and temperature-scaled (the run's calibration); and the hierarchy's probabilities."""
        raw = self.model.predict(np.asarray(batch, np.uint8), batch_size=batch_size, verbose=0)
        probs = {}
        for p in self.order:
            per_crop = np.asarray(raw[p], dtype=np.float64).reshape(-1, crops, raw[p].shape[-1])
            best = per_crop.max(axis=1)
            probs[p] = calibration.scaled(best / best.sum(axis=1, keepdims=True), self.temperature.get(p, 1.0))
        probs[HIERARCHY] = hierarchy_scores(probs, self.order, self.partitionings.hierarchy)
        if EMBEDDING in raw:  # the crops' mean direction
            per_crop = np.asarray(raw[EMBEDDING], np.float32).reshape(-1, crops, raw[EMBEDDING].shape[-1])
            probs[EMBEDDING] = knn.normalised(knn.normalised(per_crop.reshape(-1, per_crop.shape[-1]))
                                              .reshape(per_crop.shape).mean(axis=1))
        return probs

    def locations(self, probs: dict[str, np.ndarray], k: int = 5) -> dict[str, dict[str, np.ndarray]]:
        """Per output: the predicted class, its location (the cell's mean), and the top-k classes with
        their probabilities and locations."""
        out = {}
        for name, p in probs.items():
            if name == EMBEDDING:
                continue
            cells = self.cells_of(name)
            lat, lon = cells["mean_lat"].to_numpy(), cells["mean_lon"].to_numpy()
            top = np.argsort(-p, axis=1, kind="stable")[:, :min(k, p.shape[1])]
            out[name] = {"class": top[:, 0], "lat": lat[top[:, 0]], "lon": lon[top[:, 0]], "topk_class": top,
                         "topk_prob": np.take_along_axis(p, top, axis=1), "topk_lat": lat[top], "topk_lon": lon[top]}
        if self.knn is not None and EMBEDDING in probs:
            h = out[HIERARCHY]
            cells = np.argsort(-probs[HIERARCHY], axis=1, kind="stable")[:, :knn.CELLS]
            lat, lon = self.knn.refine(probs[EMBEDDING], cells, h["lat"], h["lon"])
            out[KNN] = {**h, "lat": lat, "lon": lon}
        return out

    def predict_images(self, rgbs: list[np.ndarray], k: int = 5, crops: int = 1) -> dict[str, dict[str, np.ndarray]]:
        return self.locations(self.probabilities(np.concatenate([self.prepare(r, crops) for r in rgbs]), crops), k)


def as_records(locs: dict[str, dict[str, np.ndarray]], predictor: Predictor) -> list[dict]:
    """One JSON-ready record per photo: per output, the prediction and its top-k cells."""
    n = len(next(iter(locs.values()))["class"])
    records = []
    for i in range(n):
        rec = {}
        for name, v in locs.items():
            tokens = predictor.cells_of(name)["token"].to_numpy()
            rec[name] = {"lat": float(v["lat"][i]), "lon": float(v["lon"][i]), "cell": str(tokens[v["class"][i]]),
                         "top": [{"cell": str(tokens[c]), "probability": float(pr), "lat": float(la), "lon": float(lo)}
                                 for c, pr, la, lo in zip(v["topk_class"][i], v["topk_prob"][i], v["topk_lat"][i],
                                                          v["topk_lon"][i])]}
        records.append(rec)
    return records


def predict_bytes(predictor: Predictor, data: bytes, k: int = 5, crops: int = 1,
                  max_pixels: int = images.MAX_PIXELS) -> dict:
    """One photo's prediction from its file's bytes. Only the pixels reach the network: EXIF (GPS
    included) is read for nothing but the orientation."""
    rgb = images.decode(data, max_pixels, min_side=images.eval_side(predictor.input_size))
    return as_records(predictor.predict_images([rgb], k, crops), predictor)[0]


@functools.lru_cache(maxsize=2)
def cached(lake_root: str, run_name: str) -> Predictor:
    """One predictor per Python worker process (Spark reuses workers across tasks); on an S3 lake
    each worker downloads the run's model once."""
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    lake = Lake(lake_root)
    with lake.local_copy(commit.require(lake, f"models/{run_name}", "train")) as folder:
        return Predictor.load(folder)  # all of it in memory: the copy can go


def distances(locs: dict[str, dict[str, np.ndarray]], lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    return {name: geo.haversine_km(lat, lon, v["lat"], v["lon"]) for name, v in locs.items()}
