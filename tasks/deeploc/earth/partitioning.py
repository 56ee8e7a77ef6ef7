"""Adaptive S2 partitionings (GeoEstimation's algorithm) and the hierarchy between them.

A partitioning is a plain table: class, S2 token, level, image count, mean latitude/longitude of its
member images. Cells are quadtree leaves: start every image at ``min_level``, drop cells with
``tau_min`` or fewer images, push the images of cells holding more than ``tau_max`` one level deeper
until none does (or ``max_level`` is reached), drop small cells again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deeploc.earth import geo, s2

MIN_LEVEL = 2
MAX_LEVEL = 18  # ~35 m cells: finer than street scale, so splitting further has no use


@dataclass(frozen=True)
class Spec:
    name: str
    tau_min: int
    tau_max: int

    @classmethod
    def parse(cls, text: str) -> list["Spec"]:
        """``coarse:5:500,medium:5:200,fine:5:100`` (coarse to fine)."""
        specs = []
        for part in text.split(","):
            name, lo, hi = part.strip().split(":")
            specs.append(cls(name, int(lo), int(hi)))
        if len({s.name for s in specs}) != len(specs):
            raise ValueError(f"partitioning names must be unique: {text}")
        for s in specs:
            if not 0 <= s.tau_min < s.tau_max:
                raise ValueError(f"{s.name}: need 0 <= tau_min < tau_max, got {s.tau_min}, {s.tau_max}")
        return specs


def index_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, each value's position among them), as ``np.unique(return_inverse=True)``
    gives them. pandas' factorize hashes the values and sorts only the distinct ones: 4-6x faster than
    numpy's sort of every value plus a binary search (2 million cell ids, 300 to 30,000 distinct)."""
    inv, uniq = pd.factorize(values, sort=True)
    return uniq, inv


def _counts(values: np.ndarray) -> np.ndarray:
    """For each value, how many times it occurs."""
    uniq, inv = index_of(values)
    return np.bincount(inv, minlength=len(uniq))[inv]


def _drop_small(cells: np.ndarray, keep: np.ndarray, tau_min: int) -> np.ndarray:
    out = keep.copy()
    out[np.flatnonzero(keep)[_counts(cells[keep]) <= tau_min]] = False
    return out


def assign_cells(leaf: np.ndarray, tau_min: int, tau_max: int, min_level: int = MIN_LEVEL,
                 max_level: int = MAX_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Per image: its cell id in the partitioning and whether it kept a cell.

    Only the images of over-full cells take another pass: a cell at or under tau_max is final, so
    the work shrinks with every level instead of re-sorting every image each time.
    """
    cells = s2.parent(leaf, min_level)
    keep = _drop_small(cells, np.ones(leaf.shape, bool), tau_min)
    active, level = np.flatnonzero(keep), min_level
    while active.size and level < max_level:
        active = active[_counts(cells[active]) > tau_max]
        level += 1
        cells[active] = s2.parent(leaf[active], level)
    keep = _drop_small(cells, keep, tau_min)
    return cells, keep


def table_from_cells(name: str, uniq: np.ndarray, inv: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> pd.DataFrame:
    """The partitioning's table from its sorted cell ids and each member image's index into them; a cell's
    radius is the root mean square distance of its images from its mean (how far off a right answer is)."""
    mean_lat, mean_lon = geo.group_mean_latlon(inv, lat, lon, len(uniq))
    count = np.bincount(inv, minlength=len(uniq))
    square_km = np.bincount(inv, weights=geo.haversine_km(lat, lon, mean_lat[inv], mean_lon[inv]) ** 2, minlength=len(uniq))
    return pd.DataFrame({
        "partitioning": name, "class": np.arange(len(uniq), dtype=np.int32),
        "token": [s2.token(c) for c in uniq], "cell_id": uniq.astype(np.uint64),
        "level": s2.level_of(uniq).astype(np.int32),
        "count": count.astype(np.int64), "mean_lat": mean_lat, "mean_lon": mean_lon,
        "radius_km": np.sqrt(square_km / np.maximum(count, 1))})


def build(lat: np.ndarray, lon: np.ndarray, spec: Spec, leaf: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(cell table, class per image with -1 for images in no cell); ``leaf`` saves recomputing ids."""
    leaf = s2.leaf_ids(lat, lon) if leaf is None else leaf
    cells, keep = assign_cells(leaf, spec.tau_min, spec.tau_max)
    uniq, inv = index_of(cells[keep])
    labels = np.full(len(lat), -1, dtype=np.int32)
    labels[keep] = inv
    return table_from_cells(spec.name, uniq, inv, lat[keep], lon[keep]), labels


def locate_leaves(table: pd.DataFrame, leaf: np.ndarray) -> np.ndarray:
    """Class of the cell of ``table`` containing each leaf cell id, or -1."""
    out = np.full(leaf.shape, -1, dtype=np.int32)
    for level, group in table.groupby("level"):
        ids = group["cell_id"].to_numpy(np.uint64)
        order = np.argsort(ids)
        ids, classes = ids[order], group["class"].to_numpy()[order]
        anc = s2.parent(leaf, int(level))
        pos = np.clip(np.searchsorted(ids, anc), 0, len(ids) - 1)
        hit = ids[pos] == anc
        out[hit] = classes[pos[hit]]
    return out


def locate(table: pd.DataFrame, lat, lon) -> np.ndarray:
    """Class of the cell of ``table`` containing each point, or -1."""
    return locate_leaves(table, s2.leaf_ids(lat, lon))


def hierarchy(tables: dict[str, pd.DataFrame], order: list[str]) -> pd.DataFrame:
    """For each class of the finest partitioning, the class of every coarser one containing its mean."""
    fine = tables[order[-1]]
    out = pd.DataFrame({order[-1]: fine["class"].to_numpy()})
    for name in order[:-1]:
        out[name] = locate(tables[name], fine["mean_lat"].to_numpy(), fine["mean_lon"].to_numpy())
    return out[order]


@dataclass(frozen=True)
class Partitionings:
    """What the partitioning stage made, as every later stage reads it: the partitionings' names coarse
    to fine (``order``), all their cells in one table, and the finest class -> coarser classes hierarchy."""

    order: tuple[str, ...]
    cells: pd.DataFrame       # partitioning, class, token, level, count, mean_lat, mean_lon, radius_km
    hierarchy: pd.DataFrame   # one row per finest class: its class in every partitioning

    @classmethod
    def read(cls, folder: str, order, lake=None) -> "Partitionings":
        """From ``cells.parquet`` and ``hierarchy.parquet`` in a local folder, or a lake location."""
        read = (lambda name: lake.read_parquet(f"{folder}/{name}")) if lake else \
            (lambda name: pd.read_parquet(f"{folder}/{name}"))
        cells = read("cells.parquet")
        if "radius_km" not in cells:  # runs partitioned before cells had a radius
            cells["radius_km"] = 0.0
        return cls(tuple(order), cells, read("hierarchy.parquet"))

    @property
    def finest(self) -> str:
        return self.order[-1]

    @property
    def classes(self) -> dict[str, int]:
        """Classes per partitioning, coarse to fine (the network's output sizes)."""
        return {p: int((self.cells["partitioning"] == p).sum()) for p in self.order}

    def of(self, name: str) -> pd.DataFrame:
        """One partitioning's cells, row i being class i."""
        cells = self.cells[self.cells["partitioning"] == name]
        return cells.sort_values("class").reset_index(drop=True)
