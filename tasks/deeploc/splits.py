"""A deterministic split decided by each photo id alone: adding rows never moves an existing photo."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def unit_hash(photo_ids) -> np.ndarray:
    """SplitMix64 of the id mapped to [0, 1): well mixed, stable across runs, machines and versions."""
    with np.errstate(over="ignore"):
        z = np.asarray(photo_ids, dtype=np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign(photo_ids, test_fraction: float = 0.2, val_fraction: float = 0.2) -> np.ndarray:
    """``test`` (held out for inference and evaluation), then train/val at 1-val:val of the rest."""
    if not (0 <= test_fraction < 1 and 0 < val_fraction < 1):
        raise ValueError("need 0 <= test_fraction < 1 and 0 < val_fraction < 1")
    u = unit_hash(photo_ids)
    rest = (u - test_fraction) / (1 - test_fraction)
    return np.where(u < test_fraction, "test", np.where(rest < val_fraction, "val", "train"))
