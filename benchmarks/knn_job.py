"""The measured part of the kNN benchmark: query time of the refinement's index at 1M training photos.

    python -m benchmarks.knn_job --width W [--photos N] [--cells C] [--queries Q]

Synthetic unit vectors filed under C cells whose sizes are skewed (log-normal, like photo counts per
cell), built chunk by chunk into the same index ``deeploc.learn.knn.build`` makes. A query searches the 5 cells
the hierarchy would give it (drawn by size: dense cells come up more often, the harder case); the limit it
is compared with is the same index scanning every list (an exhaustive search), in the same run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

CHUNK = 50_000


def measure(width: int, photos: int, cells: int, queries: int) -> dict:
    import faiss

    from deeploc.learn import knn

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    weight = rng.lognormal(0.0, 1.0, cells)
    weight /= weight.sum()
    first = knn.normalised(rng.standard_normal((CHUNK, width), dtype=np.float32))
    first_cells = rng.choice(cells, CHUNK, p=weight)
    t0 = time.perf_counter()
    index = knn.build(first, first_cells, cells)  # the stage's own build; the rest is added the same way
    for start in range(CHUNK, photos, CHUNK):
        n = min(CHUNK, photos - start)
        x = knn.normalised(rng.standard_normal((n, width), dtype=np.float32))
        ids, where = np.arange(start, start + n, dtype=np.int64), rng.choice(cells, n, p=weight).astype(np.int64)
        index.add_core(n, faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(where))  # named: swig_ptr holds no reference
    build_s = time.perf_counter() - t0
    rng_places = np.random.default_rng(1)
    refiner = knn.Refiner(index, rng_places.uniform(-60, 70, photos), rng_places.uniform(-180, 180, photos))
    q = knn.normalised(rng.standard_normal((queries, width), dtype=np.float32))
    top = np.stack([rng.choice(cells, knn.CELLS, replace=False, p=weight) for _ in range(queries)]).astype(np.int64)
    sizes = np.array([index.invlists.list_size(c) for c in range(cells)])
    here = np.zeros(1)
    refiner.refine(q[:10], top[:10], np.zeros(10), np.zeros(10))  # warm-up
    t0 = time.perf_counter()
    for i in range(queries):  # one photo at a time: the search and the densest group
        refiner.refine(q[i:i + 1], top[i:i + 1], here, here)
    per_photo = (time.perf_counter() - t0) / queries
    exhaustive = min(queries, 20)
    index.nprobe = cells
    t0 = time.perf_counter()
    for i in range(exhaustive):
        index.search(q[i:i + 1], knn.NEIGHBOURS)
    per_photo_all = (time.perf_counter() - t0) / exhaustive
    return {"width": width, "photos": photos, "cells": cells, "queries": queries, "build_s": build_s,
            "scanned_per_query": float(sizes[top].sum(axis=1).mean()), "largest_cell": int(sizes.max()),
            "ms_per_photo": 1000 * per_photo, "ms_per_photo_exhaustive": 1000 * per_photo_all}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--photos", type=int, default=1_000_000)
    ap.add_argument("--cells", type=int, default=12_893)  # the reference's finest partitioning
    ap.add_argument("--queries", type=int, default=2000)
    a = ap.parse_args()
    print(json.dumps(measure(a.width, a.photos, a.cells, a.queries)))


if __name__ == "__main__":
    main()
