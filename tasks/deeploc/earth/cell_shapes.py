"""The outlines of S2 cells as lat/lon polygons, for drawing a partitioning's cells on a map. A cell's
edges are great-circle arcs; each is drawn as a few points along the arc, so large cells keep their shape."""

from __future__ import annotations

import numpy as np

from deeploc.earth import geo


def outline(token: str, points_per_edge: int = 6) -> list[list[float]]:
    """[[lat, lon], ...] around the cell (closed by the map library), rounded to 1e-4 degrees."""
    import s2sphere

    cell = s2sphere.Cell(s2sphere.CellId.from_token(token))
    corners = [cell.get_vertex(k) for k in range(4)]
    xyz = np.array([[p[0], p[1], p[2]] for p in corners])
    t = np.linspace(0, 1, points_per_edge, endpoint=False)[:, None]
    # along each chord, then back onto the sphere: the great-circle arc between the corners
    seg = np.concatenate([a * (1 - t) + b * t for a, b in zip(xyz, np.roll(xyz, -1, axis=0))])
    lat, lon = geo.from_xyz(seg / np.linalg.norm(seg, axis=1, keepdims=True))
    lon = np.degrees(np.unwrap(np.radians(lon)))  # a cell across the antimeridian stays in one piece
    return [[round(float(la), 4), round(float(lo), 4)] for la, lo in zip(lat, lon)]
