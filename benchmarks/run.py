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


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def record(name: str, lines: list[str]) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n## {name} ({stamp})\n", f"Machine: {machine()}; commit {commit()}\n",
             *[f"{line}\n" for line in lines]]
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


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB of it and all its children, JVM included)."""
    import psutil

    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak, ps = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return wall, peak / 2**20


def metadata_set(rows: int, files: int) -> tuple[str, list[str]]:
    """Generated metadata (bz2), made once and kept under benchmarks/out."""
    out = os.path.join(OUT, f"metadata-{rows}")
    if not os.path.exists(os.path.join(out, "manifest.json")):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "deeploc.cli", "-q", "demo-data", "--out", out, "--rows", str(rows),
                        "--files", str(files), "--no-images"], check=True, stdout=subprocess.DEVNULL)
        print(f"generated {rows:,} metadata rows in {time.monotonic() - t0:.0f} s")
    return out, sorted(os.path.join(out, "metadata", f) for f in os.listdir(os.path.join(out, "metadata")))


def bench_metadata(a) -> None:
    cores = os.cpu_count() or 2
    lines = [f"- local[{cores}] Spark ({cores} cores), generated 25-column rows, {a.files} files per set; one process "
             "and one Spark session per size, start-up excluded (a warm-up job first); peak RSS of that process "
             "and its children (JVM, Python workers) over the whole measurement"]
    for rows in a.rows:
        out, files = metadata_set(rows, a.files)
        plain = os.path.join(out, "plain")
        if not os.path.isdir(plain):
            os.makedirs(plain)
            for f in files:
                with open(os.path.join(plain, os.path.basename(f)[:-4] + ".tsv"), "wb") as dst:
                    subprocess.run(["bzip2", "-dc", f], stdout=dst, check=True)
        plain_files = sorted(os.path.join(plain, f) for f in os.listdir(plain))
        # The decompression limit, for reference: bzip2 -dc of the same files, one per core.
        t_dec, _ = measure(["bash", "-c", f"printf '%s\\0' {' '.join(files)} | xargs -0 -P {cores} -n 1 bzip2 -dc > /dev/null"])
        work = os.path.join(OUT, f"metadata-work-{rows}")
        env = {**os.environ, "DEEPLOC_SPARK_MASTER": f"local[{cores}]",
               "PYTHONPATH": os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        result_file = os.path.join(work, "result.json")
        os.makedirs(work, exist_ok=True)
        _, rss = measure(["bash", "-c", f"{sys.executable} -m benchmarks.metadata_job --work {work} --bz2 {' '.join(files)} "
                                        f"--plain {' '.join(plain_files)} | tail -1 > {result_file}"], env)
        r = json.load(open(result_file))
        mb = sum(os.path.getsize(f) for f in files) / 2**20
        ratio_bz2, ratio_plain = r["bare_bz2_s"] / r["parse_bz2_s"], r["bare_plain_s"] / r["parse_plain_s"]
        backfill = (r["parse_bz2_s"] + r["backfill_s"]) / r["parse_bz2_s"]
        lines += [
            f"- {rows:,} rows ({mb:.0f} MB bz2; bzip2 -dc x{cores}: {rows / t_dec:,.0f} rows/s):",
            f"  - bare Spark job: bz2 {r['bare_bz2_s']:.1f} s ({rows / r['bare_bz2_s']:,.0f} rows/s), plain "
            f"{r['bare_plain_s']:.1f} s ({rows / r['bare_plain_s']:,.0f} rows/s)",
            f"  - parse step: bz2 {r['parse_bz2_s']:.1f} s ({rows / r['parse_bz2_s']:,.0f} rows/s) = **{ratio_bz2:.2f}x** "
            f"the bare job's rate; plain {r['parse_plain_s']:.1f} s = **{ratio_plain:.2f}x** (target >= 0.7x: "
            f"{'met' if min(ratio_bz2, ratio_plain) >= 0.7 else 'NOT met'})",
            f"  - backfill of 11 yearly slices on the parsed table: {r['backfill_s']:.1f} s ({r['slice_s']:.1f} s a slice, "
            f"{r['backfill_rows_in']:,} rows in); parse + backfill = **{backfill:.2f}x** one parse (target <= 1.4x: "
            f"{'met' if backfill <= 1.4 else 'NOT met'})",
            f"  - peak RSS of the whole measurement {rss:,.0f} MB",
        ]
    record("metadata: the parse step against a bare Spark job; a backfill against one parse", lines)


def bench_availability(a) -> None:
    import shutil

    lake = os.path.join(OUT, "availability-lake")
    shutil.rmtree(lake, ignore_errors=True)
    r = child("availability_job", "--objects", str(a.objects), "--lake", lake)
    lst, head = r["list"], r["head"]
    n_list, n_head = sum(lst["requests"].values()), sum(head["requests"].values())
    per_m = 1_000_000 / r["objects"]
    record("availability: listing by prefix against one HEAD per object (moto S3 server)", [
        f"- {r['objects']:,} objects over {lst['prefixes']:,} prefixes, as many metadata rows, local[2] Spark",
        f"- listing: {n_list:,} requests ({lst['requests']}), {lst['seconds']:.1f} s; at 1M rows (objects per "
        f"prefix scaled up) {r['list_requests_at_1m']:,} requests per 1M metadata rows "
        f"(target <= 5,000: {'met' if r['list_requests_at_1m'] <= 5000 else 'NOT met'})",
        f"- per-object HEAD: {n_head:,} requests = {n_head * per_m:,.0f} per 1M rows, {head['seconds']:.1f} s",
        f"- wall time HEAD / listing: **{head['seconds'] / lst['seconds']:.1f}x**; both found {lst['out']:,} usable",
        "- on the real bucket (~24,400 objects per prefix) a full listing is 4,096 x 25 = ~102k requests for "
        "~100M rows (~1,000 per 1M rows), made once and kept in the lake for every slice",
        "- moto answers every listing by scanning the whole bucket, so listing wall times here grow with the "
        "bucket, unlike S3; the request counts are exact",
    ])


def faces_set(rows: int) -> tuple[str, str]:
    """A demo data set of ``rows`` rows and its lake up to ``images/``, made once under benchmarks/out."""
    from deeploc.demo.generate import generate

    demo = os.path.join(OUT, f"faces-demo-{rows}")
    generate(demo, rows=rows, seed=3, reuse=True)
    lake = os.path.join(OUT, f"faces-lake-{rows}")
    if not os.path.isdir(os.path.join(lake, "images")):
        from deeploc.sources.bucket import Bucket
        from deeploc.stages import availability, metadata, parse

        parse.run([os.path.join(demo, "metadata")], lake)
        metadata.run(lake)
        availability.run(lake, Bucket(os.path.join(demo, "bucket")))
    return lake, os.path.join(demo, "bucket")


def bench_faces(a) -> None:
    cores = os.cpu_count() or 2
    lines = []
    for rows in a.rows:
        lake, bucket = faces_set(rows)
        # The bare loop runs before and after the stage: this VM's speed drifts by 10-15% over minutes;
        # the stage reports the median of three runs.
        before = child("faces_job", "--lake", lake, "--bucket", bucket, "--mode", "bare", cores="0")
        stage = child("faces_job", "--lake", lake, "--bucket", bucket, "--mode", "stage")
        after = child("faces_job", "--lake", lake, "--bucket", bucket, "--mode", "bare", cores="0")
        bare = (before["per_second"] + after["per_second"]) / 2
        per_core = stage["per_second"] / cores
        ratio = per_core / bare
        lines += [
            f"- {stage['images']:,} demo images ({rows:,} metadata rows; 128x128 JPEG, 5% with a face); bare loop: "
            f"read + decode + cascade, one core (taskset -c 0), before and after the stage: "
            f"{before['per_second']:,.0f} and {after['per_second']:,.0f}, mean {bare:,.0f} images/s",
            f"  - faces stage (mapInPandas, local[{cores}], write and ledger included), median of "
            f"{len(stage['runs'])} runs after a warm-up ({', '.join(f'{r:,.0f}' for r in stage['runs'])}): "
            f"{stage['per_second']:,.0f} images/s = {per_core:,.0f} per core; fixed cost per run (stage time less "
            f"the bare loop's time for the same images on {cores} cores): "
            f"{stage['images'] / stage['per_second'] - stage['images'] / bare / cores:.1f} s",
            f"  - per core, stage / bare loop: **{ratio:.2f}x** (target >= 0.85x: {'met' if ratio >= 0.85 else 'NOT met'})",
        ]
    record("faces: the Spark stage against a bare loop of the cascade", lines)


def bench_input(a) -> None:
    d = os.path.join(OUT, f"input-{a.images}")
    if not os.path.exists(os.path.join(d, "lake", "shards", "full", "CURRENT")):
        t0 = time.monotonic()
        child("input_job", "--make", d, "--images", str(a.images))
        print(f"made {a.images} photos and their shards in {time.monotonic() - t0:.0f} s")
    before = child("input_job", "--measure", "bare", "--dir", d, cores="0")
    shards = child("input_job", "--measure", "shards", "--dir", d, cores="0")
    direct = child("input_job", "--measure", "images", "--dir", d, cores="0")
    after = child("input_job", "--measure", "bare", "--dir", d, cores="0")
    size = child("input_job", "--measure", "bytes", "--dir", d)
    bare, nat = (before["per_second"] + after["per_second"]) / 2, size["natural"]
    ratio = shards["per_second"] / bare
    record("input: training input from JPEG shards with the reference augmentation against a bare decode + "
           "RandomResizedCrop + flip loop, one core", [
        f"- {shards['images']:,} training photos (640x480 JPEG, rendered scenes) in the yfcc profile's shards: JPEG at "
        f"320 px (shorter side), {size['kb_per_photo']:.1f} KB a photo; on {nat['photos']} natural photos "
        f"(scikit-image's samples) {nat['jpeg_kb']:.1f} KB against {nat['raw_kb']:.0f} KB of raw pixels "
        f"(target <= 60 KB: {'met' if nat['jpeg_kb'] <= 60 else 'NOT met'})",
        "- one core (taskset -c 0; tf.data with a one-thread pool); 224 px output, crops of 66-100 % of the area, "
        "aspect 3/4-4/3, flips",
        f"- bare loop (Pillow decode of the shards' JPEGs from memory, crop, resize, flip): {before['per_second']:,.0f} "
        f"and {after['per_second']:,.0f} images/s before and after, mean {bare:,.0f}",
        f"- from the shards (interleave, shuffle, parse, crop-aware decode, resize, flip, batch): "
        f"{shards['per_second']:,.0f} images/s = **{ratio:.2f}x** the bare loop (targets >= 1.0x: "
        f"{'met' if ratio >= 1 else 'NOT met'}; >= 250 images/s a core: {'met' if shards['per_second'] >= 250 else 'NOT met'})",
        f"- straight from the images (read, decode, resize, encode to JPEG, then the same): {direct['per_second']:,.0f} "
        f"images/s = {direct['per_second'] / bare:.2f}x",
    ])


def bench_infer(a) -> None:
    d = inference_set(a.images)
    lines = []
    for run_name in ("demo", "resnet"):
        bare = child("infer_job", "--bare", run_name, "--dir", d)
        # One worker on one core against two workers on two: the stage's threads then share what the
        # worker count gives them, as on a cluster node.
        one = child("infer_job", "--run", run_name, "--dir", d, "--master", "local[1]", cores="0")
        two = child("infer_job", "--run", run_name, "--dir", d, "--master", "local[2]", cores="0,1")
        scale, overhead = two["per_second"] / one["per_second"], bare["per_second"] / two["per_second"] - 1
        lines += [
            f"- {run_name} ({bare['model']}, {bare['input']} px), {one['images']:,} photos (640x480 JPEG):",
            f"  - infer stage (Spark mapInPandas, read + decode overlapped with the model; local[1] pinned to one "
            f"core, local[2] to two), median of 3 after a warm-up, write and ledger included: "
            f"local[1] {one['per_second']:,.1f} images/s, local[2] {two['per_second']:,.1f} images/s: "
            f"**{scale:.2f}x** from one worker to two (target >= 1.7x: {'met' if scale >= 1.7 else 'NOT met'})",
            f"  - model.predict on the same images already decoded in memory, 2 threads: {bare['per_second']:,.1f} "
            f"images/s; the stage's overhead at local[2]: **{100 * overhead:.0f} %** (target <= 20 %: "
            f"{'met' if overhead <= 0.2 else 'NOT met'})"]
    record("infer: images per second, one worker against two, and against model.predict alone", lines)


def inference_set(n: int) -> str:
    """Photos and two runs with random weights (``infer_job --make``), made once per size under out/."""
    d = os.path.join(OUT, f"infer-{n}")
    if not os.path.exists(os.path.join(d, "ready")):
        t0 = time.monotonic()
        child("infer_job", "--make", d, "--images", str(n))
        print(f"made the inference set in {time.monotonic() - t0:.0f} s")
    return d


def bench_serve(a) -> None:
    d = inference_set(a.images)
    lines = ["- one 640x480 JPEG uploaded again and again to `deeploc serve`'s app (uvicorn in its own process, "
             "default limits: 2 prediction threads) from a client on the same machine; against `predict_bytes` "
             "(what `deeploc predict` runs per photo) on the same photo in the benchmark's process, same run"]
    for run_name in ("demo", "resnet"):
        r = child("serve_job", "--dir", d, "--run", run_name)
        base, seq, conc = r["predict"], r["sequential"], r["concurrent"]
        lines += [
            f"- {run_name} ({r['photo_bytes'] / 1000:.0f} KB photo): prediction alone p50 {base['p50_ms']:.1f} ms, "
            f"p95 {base['p95_ms']:.1f} ms",
            f"  - sequential uploads ({seq['n']}): p50 {seq['p50_ms']:.1f} ms, p95 {seq['p95_ms']:.1f} ms = "
            f"**{seq['p50_ms'] / base['p50_ms']:.2f}x** the prediction alone at p50",
            f"  - {conc['clients']} concurrent clients ({conc['n']} uploads): p50 {conc['p50_ms']:.1f} ms, p95 "
            f"{conc['p95_ms']:.1f} ms, {conc['uploads_per_s']:.1f} uploads/s "
            f"({conc['uploads_per_s'] * base['p50_ms'] / 1000:.2f}x one core's rate of predictions alone)"]
    record("serve: upload latency, sequential and 8 concurrent, against the prediction alone", lines)


def bench_knn(a) -> None:
    lines = [f"- the refinement's index (`deeploc.learn.knn.build`: faiss IVF, one list per finest cell) of {a.photos:,} synthetic "
             "unit vectors over 12,893 cells of log-normal sizes; each query searches 5 cells drawn by size, one "
             "photo at a time, faiss on one thread pinned to one core; the limit: the same index scanning every list"]
    for width, what in ((128, "the demo's small CNN"), (2048, "ResNet50/101 (the reference)")):
        r = child("knn_job", "--width", str(width), "--photos", str(a.photos), cores="0")
        lines.append(f"  - width {width} ({what}): **{r['ms_per_photo']:.2f} ms per photo** (target <= 5 ms: "
                     f"{'met' if r['ms_per_photo'] <= 5 else 'NOT met'}), {r['scanned_per_query']:,.0f} vectors scanned "
                     f"a query (largest cell {r['largest_cell']:,}); exhaustive {r['ms_per_photo_exhaustive']:.1f} ms = "
                     f"{r['ms_per_photo_exhaustive'] / r['ms_per_photo']:.0f}x slower; index built in {r['build_s']:.0f} s")
    record("knn: refinement query time at 1M training photos, one core", lines)


def bench_commit(a) -> None:
    r = child("commit_job", "--per-month", str(a.per_month), "--rows", str(a.rows))
    lines = [f"- one yearly slice: {r['files']} Parquet files ({r['rows']:,} rows, {r['bytes'] / 2**20:.0f} MB), "
             "already written, made current on a moto S3 server (its Glue for the catalog), in tables that exist "
             f"(a first slice, 2009, went in first, untimed: copy {r['copy_warm-up_s']:.2f} s, Iceberg "
             f"{r['iceberg_warm-up_s']:.2f} s with the table's creation and the process's first use of pyiceberg)"]
    for attempt, what in (("first", "first publish"), ("again", "a rerun replacing it")):
        old, new = r[f"copy_{attempt}_s"], r[f"iceberg_{attempt}_s"]
        lines.append(f"  - {what}: copy-based publish {old:.2f} s, Iceberg commit {new:.2f} s = **{new / old:.2f}x** "
                     f"(target < 1x: {'met' if new < old else 'NOT met'})")
    lines.append("- the copy-based publish copies every object once (twice on a rerun: the old month to trash, "
                 "the new one in); the commit reads each new file's footer and writes a few small metadata objects. "
                 "moto copies in memory: on S3 a copy costs more, so the gap there is larger, not smaller")
    record("commit: making a slice current on S3, Iceberg commit against the copy-based publish", lines)


def bench_plan(a) -> None:
    r = child("plan_job", "--lake", os.path.join(OUT, f"plan-lake-{a.rows}"), "--bucket", os.path.join(OUT, "plan-photos"),
              "--rows", str(a.rows))
    lines = [f"- a faces table of {r['rows']:,} photos spread like Flickr's (GeoNames, population-weighted; made in "
             f"{r['lake_s']:.0f} s), images cut from real photographs (scikit-image's), default aws settings, "
             "prices and rates of deeploc.prices; the account is not asked (local target: quotas are the documented "
             "defaults)"]
    for name, got in r["plans"].items():
        p = got["plan"]
        raw = 3 * p["shards"]["side"] ** 2 * 4 / 3  # a 4:3 photo's raw pixels at that shorter side
        failed = [c["name"] for c in p["checks"] if not c["ok"]]
        lines += [f"- **{name}**: planned in {got['seconds']:.1f} s; {p['data']['photos']:,} photos, classes "
                  + ", ".join(f"{x['name']} {x['classes']:,}" for x in p["partitionings"])
                  + f"; a shard record {p['shards']['per_photo'] / 1e3:.0f} KB = {p['shards']['per_photo'] / raw:.2f}x its "
                  f"raw pixels ({p['shards']['side']} px shorter side, 4:3); training disk {p['training']['disk_needed_gb']:,.0f} GB; "
                  f"${p['cost']['on_demand']:,.0f} on demand; failed checks: {', '.join(failed) or 'none'}",
                  "", "```", got["text"], "```", ""]
    record("plan: the yfcc and mp16 profiles at the reference scale, and yfcc's taus on every photo", lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="name", required=True)
    p = sub.add_parser("partition", help="issue 5: 4.7M points, tau 50 / 5000, 2000, 1000")
    p.add_argument("--points", type=int, default=4_700_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--spec", default="coarse:50:5000,medium:50:2000,fine:50:1000")
    p = sub.add_parser("metadata", help="parse step vs a bare Spark job; 11-slice backfill vs one parse; 1M and 4M rows")
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--files", type=int, default=8)
    p = sub.add_parser("commit", help="a slice made current on moto S3: Iceberg commit vs the copy-based publish")
    p.add_argument("--per-month", type=int, default=4)
    p.add_argument("--rows", type=int, default=20_000)
    p = sub.add_parser("availability", help="issue 4: listing vs per-object HEAD on a moto S3 server")
    p.add_argument("--objects", type=int, default=100_000)
    p = sub.add_parser("faces", help="issue 4: faces stage vs a bare cascade loop, per core")
    p.add_argument("--rows", type=int, nargs="+", default=[3000, 40000],
                   help="demo set sizes: the small one shows the fixed cost per run, the large one the rate")
    p = sub.add_parser("input", help="training input pipeline from shards vs a bare decode loop, one core")
    p.add_argument("--images", type=int, default=3000)
    p = sub.add_parser("infer", help="inference images/s at local[1] and local[2], against model.predict alone")
    p.add_argument("--images", type=int, default=1200)
    p = sub.add_parser("serve", help="issue 25: upload latency, sequential and 8 concurrent, vs the prediction alone")
    p.add_argument("--images", type=int, default=16, help="the size of the inference set its photo and runs come from")
    p = sub.add_parser("knn", help="issue 24: kNN query time at 1M vectors of the model's width, one core")
    p.add_argument("--photos", type=int, default=1_000_000)
    p = sub.add_parser("plan", help="issue 21: the yfcc and mp16 plans of a faces table at the reference scale")
    p.add_argument("--rows", type=int, default=5_900_000, help="photos in faces (8:2 of them train+val: ~4.7M)")
    a = ap.parse_args()
    {"plan": bench_plan, "partition": bench_partition, "metadata": bench_metadata, "commit": bench_commit, "availability": bench_availability,
     "faces": bench_faces, "input": bench_input, "infer": bench_infer, "serve": bench_serve, "knn": bench_knn}[a.name](a)


if __name__ == "__main__":
    main()
