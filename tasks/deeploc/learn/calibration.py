"""Whether a prediction's probabilities mean what they say, and a correction.

- **Temperature scaling** (Guo et al., "On Calibration of Modern Neural Networks", 2017): one number per
  partitioning, fitted after training on the validation photos by minimising the negative log-likelihood
  of their cells; probabilities become softmax(log p / T). It changes no ranking, so no accuracy.
- **Expected calibration error**: photos binned by their top-1 probability (15 equal-width bins); the
  mean over bins of |accuracy - mean probability|, weighted by the bin's share of photos.
- **Expected error in km**: per photo, over its top cells, the distance from the predicted place to a
  photo of the cell (its centre's distance and its radius, in quadrature), weighted by the cells'
  probabilities: what the model itself expects to be off by. Without the radius a photo whose best cell
  is 500 km wide would expect to be exactly right.
"""

from __future__ import annotations

import numpy as np

BINS = 15
FILE = "calibration.json"  # in models/<run>/, read by the Predictor


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row (``probs`` itself at T = 1)."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = scaled(probs, temperature)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the validation NLL (1.0 without photos)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    best = minimize_scalar(lambda log_t: nll(probs, labels, float(np.exp(log_t))), bounds=(np.log(0.05), np.log(20.0)),
                           method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))


def reliability(confidence: np.ndarray, correct: np.ndarray) -> list[dict]:
    """Per non-empty bin of the top-1 probability: its range, photos, mean probability and accuracy."""
    edges = np.linspace(0, 1, BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, BINS - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "n": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(BINS) if (which == b).any()]


def ece(confidence: np.ndarray, correct: np.ndarray) -> float:
    bins = reliability(np.asarray(confidence, float), np.asarray(correct, bool))
    total = sum(b["n"] for b in bins)
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / total) if total else float("nan")


def fit(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per partitioning: its temperature and the validation photos' calibration error before and after
    (photos in no cell of a partitioning, label -1, left out of it)."""
    out = {}
    for name, p in probs.items():
        keep = labels[name] >= 0
        p, y = p[keep], labels[name][keep]
        t = fit_temperature(p, y)
        after = scaled(p, t)
        out[name] = {"temperature": t, "photos": int(keep.sum()),
                     "ece_before": ece(p.max(axis=1), p.argmax(axis=1) == y) if len(y) else None,
                     "ece_after": ece(after.max(axis=1), after.argmax(axis=1) == y) if len(y) else None}
    return out


def expected_km(pred_lat, pred_lon, top_prob, top_lat, top_lon, top_radius) -> np.ndarray:
    """Per photo: sum_k p_k * sqrt(d(predicted place, cell k)^2 + radius_k^2) / sum_k p_k over its top cells."""
    from deeploc.earth import geo

    top_prob = np.asarray(top_prob, float)
    d = geo.haversine_km(np.asarray(pred_lat, float)[:, None], np.asarray(pred_lon, float)[:, None],
                         np.asarray(top_lat, float), np.asarray(top_lon, float))
    return (top_prob * np.hypot(d, np.asarray(top_radius, float))).sum(axis=1) / np.maximum(top_prob.sum(axis=1), 1e-12)
