"""The measured part of the partition benchmark, run in its own process (see run.py)."""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-points")
    ap.add_argument("--points-file")
    ap.add_argument("--points", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spec")
    a = ap.parse_args()
    if a.make_points:
        from deeploc.demo.places import sample_locations

        lat, lon, _ = sample_locations(np.random.default_rng(a.seed), a.points)
        np.savez(a.make_points, lat=lat, lon=lon)
        print(json.dumps({"points": a.points}))
        return

    from deeploc.earth import partitioning, s2

    data = np.load(a.points_file)
    lat, lon = data["lat"], data["lon"]
    specs = partitioning.Spec.parse(a.spec)
    t0 = time.monotonic()
    leaf = s2.leaf_ids(lat, lon)
    t1 = time.monotonic()
    tables, labels = {}, {}
    for s in specs:
        cells, keep = partitioning.assign_cells(leaf, s.tau_min, s.tau_max)
        uniq, inv = partitioning.index_of(cells[keep])
        tables[s.name], labels[s.name] = partitioning.table_from_cells(s.name, uniq, inv, lat[keep], lon[keep]), keep
    t2 = time.monotonic()
    located = {s.name: partitioning.locate_leaves(tables[s.name], leaf) for s in specs}
    t3 = time.monotonic()
    hier = partitioning.hierarchy(tables, [s.name for s in specs])
    t4 = time.monotonic()
    assert (hier.to_numpy() >= 0).all()
    print(json.dumps({
        "points": int(len(lat)), "seconds": t4 - t0,
        "phases": {"leaf_ids": t1 - t0, "partitionings": t2 - t1, "labels": t3 - t2, "hierarchy": t4 - t3},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "classes": {k: int(len(v)) for k, v in tables.items()},
        "unassigned": {k: int((v < 0).sum()) for k, v in located.items()},
    }))


if __name__ == "__main__":
    main()
