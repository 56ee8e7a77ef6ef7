"""A realistic spatial prior for the demo set: GeoNames populated places, weighted by population."""

from __future__ import annotations

import numpy as np

from deeploc.geo import EARTH_RADIUS_KM
from deeploc.geonames import load_places


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
