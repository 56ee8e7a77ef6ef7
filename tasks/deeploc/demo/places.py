"""A realistic spatial prior for the demo set: GeoNames populated places, weighted by population."""

from __future__ import annotations

import numpy as np

from deeploc.earth.geo import EARTH_RADIUS_KM
from deeploc.earth.geonames import load_places


def jitter(rng: np.random.Generator, lat, lon, km: float):
    """Points moved by a Gaussian offset of ``km`` (per axis); longitude degrees shrink with cos(latitude)."""
    lat = np.clip(np.asarray(lat, float) + np.degrees(rng.normal(0.0, km, np.shape(lat)) / EARTH_RADIUS_KM), -89.9, 89.9)
    coslat = np.maximum(np.cos(np.radians(lat)), 0.01)
    lon = np.asarray(lon, float) + np.degrees(rng.normal(0.0, km, np.shape(lon)) / (EARTH_RADIUS_KM * coslat))
    return lat, (lon + 180.0) % 360.0 - 180.0


def sample_locations(rng: np.random.Generator, n: int, jitter_km: float = 3.0):
    """Draw ``n`` places weighted by population, jittered by a few km; returns (lat, lon, place index)."""
    places = load_places()
    idx = rng.choice(len(places.lat), size=n, p=places.population / places.population.sum())
    lat, lon = jitter(rng, places.lat[idx], places.lon[idx], jitter_km)
    return lat, lon, idx
