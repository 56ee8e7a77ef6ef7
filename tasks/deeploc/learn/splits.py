"""Train / validation / test, decided by a hash: adding rows never moves a photo.

By user (the default): a hash of the Flickr user id decides all of a user's photos together, so one
user's burst of near-identical photos never lands on both sides and inflates street and city accuracy.
By photo: a hash of the photo id alone (the report's setting). The sample for ``--max-images`` is
seeded and stable too: the photos whose seeded hash is smallest.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
RULES = ("user", "photo")


def unit_hash(keys) -> np.ndarray:
    """SplitMix64 of 64-bit keys mapped to [0, 1): well mixed, stable across runs, machines and versions."""
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def text_keys(values) -> np.ndarray:
    """A 64-bit key per string (the first 8 bytes of its MD5), hashed once per distinct value."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object).fillna(""))
    table = np.array([int.from_bytes(hashlib.md5(str(u).encode()).digest()[:8], "little", signed=True)
                      for u in uniques], dtype=np.int64)
    return table[codes] if len(uniques) else np.zeros(len(codes), np.int64)


def assign(keys, test_fraction: float = 0.2, val_fraction: float = 0.2) -> np.ndarray:
    """``test`` (held out for inference and evaluation), then train/val at 1-val:val of the rest."""
    if not (0 <= test_fraction < 1 and 0 < val_fraction < 1):
        raise ValueError("need 0 <= test_fraction < 1 and 0 < val_fraction < 1")
    u = unit_hash(keys)
    rest = (u - test_fraction) / (1 - test_fraction)
    return np.where(u < test_fraction, "test", np.where(rest < val_fraction, "val", "train"))


def split(photos: pd.DataFrame, rule: str, test_fraction: float, val_fraction: float) -> np.ndarray:
    """The split of each photo under ``rule`` (``user``: by ``user_nsid``; ``photo``: by ``photo_id``)."""
    if rule not in RULES:
        raise ValueError(f"split rule must be one of {RULES}, got {rule!r}")
    keys = text_keys(photos["user_nsid"]) if rule == "user" else photos["photo_id"].to_numpy(np.int64)
    return assign(keys, test_fraction, val_fraction)


def sample_hash(photo_ids, seed: int = 0) -> np.ndarray:
    """The seeded hash in [0, 1) that orders photos for ``sample``."""
    with np.errstate(over="ignore"):
        return unit_hash(np.asarray(photo_ids, dtype=np.int64) ^ np.int64(seed * 0x5851F42D4C957F2D & 0x7FFFFFFFFFFFFFFF))


def sample(photo_ids, n: int | None, seed: int = 0) -> np.ndarray:
    """A mask of at most ``n`` photos: those with the smallest seeded hash (all when n is None)."""
    ids = np.asarray(photo_ids, dtype=np.int64)
    if n is None or n >= len(ids):
        return np.ones(len(ids), bool)
    h = sample_hash(ids, seed)
    keep = np.zeros(len(ids), bool)
    keep[np.argpartition(h, n - 1)[:n]] = True
    return keep
