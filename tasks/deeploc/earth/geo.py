"""Distances and accuracy on the sphere, shared by evaluation, partitioning and the web map."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0
# The report's scales (Table 7): street, city, region, country, continent.
SCALES_KM = {"street": 1.0, "city": 25.0, "region": 200.0, "country": 750.0, "continent": 2500.0}


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance on a sphere of the mean Earth radius."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def accuracy(dist_km) -> dict[str, float]:
    """Share of predictions within each scale, plus the median error and the count."""
    d = np.asarray(dist_km, dtype=float)
    if d.size == 0:
        return {**{f"{k}_{int(v)}km": float("nan") for k, v in SCALES_KM.items()}, "median_km": float("nan"), "n": 0}
    out = {f"{k}_{int(v)}km": float(np.mean(d <= v)) for k, v in SCALES_KM.items()}
    out["median_km"] = float(np.median(d))
    out["n"] = int(d.size)
    return out


def to_xyz(lat, lon) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def from_xyz(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def group_mean_latlon(groups: np.ndarray, lat, lon, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean location per group as the normalised mean of unit vectors: right across the antimeridian
    (a cell straddling 180 degrees gets a mean longitude near 180, not near 0)."""
    xyz = to_xyz(np.asarray(lat, float), np.asarray(lon, float))
    sums = np.stack([np.bincount(groups, weights=xyz[:, k], minlength=n_groups) for k in range(3)], axis=1)
    return from_xyz(sums)
