"""The kNN refinement on planted embeddings: neighbours are searched only inside the cells given, and the
answer is the densest group of the neighbours' places, not their mean."""

import numpy as np
import pytest
from deeploc.learn import knn


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_the_densest_group_by_hand():
    # three neighbours around Paris (within a few km of each other), two far apart in Madrid and Rome
    lat, lon = np.array([48.85, 48.87, 48.83, 40.42, 41.90]), np.array([2.35, 2.33, 2.37, -3.70, 12.50])
    got = knn.densest(lat, lon, np.array([0.5, 0.5, 0.5, 0.9, 0.9]))  # the lone ones are more similar, but alone
    assert got == pytest.approx((48.85, 2.35), abs=0.01)  # the Paris three's mean, not the five's (~46, 3)


def test_search_stays_inside_the_given_cells_and_refines_to_the_group():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=16))
    # cell 0: ten photos that look like the query, in Lyon; cell 1: ten that look the same, in Oslo;
    # cell 2: noise elsewhere
    alike = _unit(base + 0.05 * rng.normal(size=(20, 16)))
    noise = _unit(rng.normal(size=(10, 16)))
    emb = np.vstack([alike, noise])
    cells = np.array([0] * 10 + [1] * 10 + [2] * 10)
    lat = np.r_[45.76 + 0.01 * rng.normal(size=10), 59.91 + 0.01 * rng.normal(size=10), rng.uniform(-50, 50, 10)]
    lon = np.r_[4.84 + 0.01 * rng.normal(size=10), 10.75 + 0.01 * rng.normal(size=10), rng.uniform(-150, 150, 10)]
    refiner = knn.Refiner(knn.build(emb, cells, 4), lat, lon)  # cell 3 has no training photo
    sims, ids = refiner.neighbours(base[None], np.array([[0, 2]]))  # Oslo's cell is not among the top cells
    found = ids[0][ids[0] >= 0]
    assert set(cells[found]) <= {0, 2} and (cells[found] == 0).sum() == 10
    got_lat, got_lon = refiner.refine(base[None], np.array([[0, 2]]), np.array([0.0]), np.array([0.0]))
    assert (got_lat[0], got_lon[0]) == pytest.approx((45.76, 4.84), abs=0.02)
    kept = refiner.refine(base[None], np.array([[3]]), np.array([7.0]), np.array([8.0]))
    assert (kept[0][0], kept[1][0]) == (7.0, 8.0)  # no neighbour in the cells: the hierarchy's answer stays
