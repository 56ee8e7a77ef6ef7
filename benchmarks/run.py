"""Benchmarks: ``./dev bench <name> [options]``; each prints its numbers and appends them to RESULTS.md.

Each benchmark runs its measured part in a fresh child process, so peak memory (max RSS) is that of
the work alone, and pins it to one core where the target is "on one core".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
OUT = os.path.join(HERE, "out")


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.system()}"


def child(module: str, *args: str, cores: str | None = None) -> dict:
    """Run ``python -m benchmarks.<module> args`` (optionally pinned to cores) and read its JSON line."""
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    if cores is not None:
        cmd = ["taskset", "-c", cores, *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def record(name: str, lines: list[str]) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n## {name} ({stamp})\n", f"Machine: {machine()}\n", *[f"{line}\n" for line in lines]]
    with open(RESULTS, "a") as f:
        f.writelines(block)
    sys.stdout.writelines(block)


def bench_partition(a) -> None:
    os.makedirs(OUT, exist_ok=True)
    points = os.path.join(OUT, f"points-{a.points}-{a.seed}.npz")
    if not os.path.exists(points):
        t0 = time.monotonic()
        child("partition_job", "--make-points", points, "--points", str(a.points), "--seed", str(a.seed))
        print(f"drew {a.points} points from the demo spatial prior in {time.monotonic() - t0:.0f} s")
    r = child("partition_job", "--points-file", points, "--spec", a.spec, cores="0")
    ok_t, ok_m = r["seconds"] < 60, r["peak_rss_mb"] < 2048
    record("partition: adaptive S2 partitionings, labels, hierarchy", [
        f"- {r['points']:,} points (GeoNames prior, population-weighted), spec `{a.spec}`, one core (taskset -c 0)",
        f"- wall time {r['seconds']:.1f} s (target < 60 s: {'met' if ok_t else 'NOT met'}); "
        f"leaf ids {r['phases']['leaf_ids']:.1f} s, partitionings {r['phases']['partitionings']:.1f} s, "
        f"labels {r['phases']['labels']:.1f} s, hierarchy {r['phases']['hierarchy']:.2f} s",
        f"- peak memory (max RSS of the process, inputs included) {r['peak_rss_mb']:.0f} MB "
        f"(target < 2048 MB: {'met' if ok_m else 'NOT met'})",
        f"- classes: {', '.join(f'{k} {v}' for k, v in r['classes'].items())}; "
        f"images in no cell: {', '.join(f'{k} {v}' for k, v in r['unassigned'].items())}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="name", required=True)
    p = sub.add_parser("partition", help="issue 5: 4.7M points, tau 50 / 5000, 2000, 1000")
    p.add_argument("--points", type=int, default=4_700_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spec", default="coarse:50:5000,medium:50:2000,fine:50:1000")
    a = ap.parse_args()
    {"partition": bench_partition}[a.name](a)


if __name__ == "__main__":
    main()
