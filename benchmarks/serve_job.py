"""The measured part of the serve benchmark: upload latency through ``deeploc serve``'s app (uvicorn,
its own process) against the prediction alone (``predict_bytes``, what ``deeploc predict`` times per
photo), for the same 640x480 JPEG, in the same run.

    python -m benchmarks.serve_job --dir DIR --run RUN     DIR made by ``infer_job --make``
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

BOUNDARY = "bench"


def _server(model_dir: str, site: str, ports) -> None:
    import socket

    import uvicorn

    from deeploc.learn.predict import Predictor
    from deeploc.web.serve import build_app, Limits, Settings, uvicorn_options

    settings = Settings(lake="-", port=0)
    app = build_app(site, Predictor.load(model_dir), "bench", Limits(), settings.hosts(), None)
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    ports.put(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings))).run(sockets=[sock])


def _upload(port: int, body: bytes) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"upload answered {resp.status}")
    return elapsed


def percentiles(seconds: list[float]) -> dict:
    ms = sorted(1000 * s for s in seconds)
    return {"p50_ms": statistics.median(ms), "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], "n": len(ms)}


def measure(d: str, run: str, sequential: int = 40, concurrent: int = 8, rounds: int = 8) -> dict:
    import pandas as pd

    from deeploc.learn.predict import predict_bytes, Predictor
    from deeploc.storage import commit
    from deeploc.storage.lake import Lake

    model_dir = commit.current(Lake(os.path.join(d, "lake")), f"models/{run}")
    key = pd.read_parquet(os.path.join(d, "photos.parquet"))["object_key"].iloc[0]
    with open(os.path.join(d, "bucket", key), "rb") as f:
        photo = f.read()
    body = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="photo"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()
    predictor = Predictor.load(model_dir)
    predict_bytes(predictor, photo)  # warm-up
    alone = []
    for _ in range(sequential):
        t0 = time.perf_counter()
        predict_bytes(predictor, photo)
        alone.append(time.perf_counter() - t0)
    site = tempfile.mkdtemp()
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("bench")
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_server, args=(model_dir, site, ports), daemon=True)
    server.start()
    port = ports.get(timeout=300)
    for _ in range(300):  # until it answers (bounded: 30 s)
        try:
            _upload(port, body)
            break
        except OSError:
            time.sleep(0.1)
    seq = [_upload(port, body) for _ in range(sequential)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        conc = list(pool.map(lambda _: _upload(port, body), range(concurrent * rounds)))
    wall = time.perf_counter() - t0
    server.terminate()
    server.join(10)
    return {"photo_bytes": len(photo), "model": run, "predict": percentiles(alone), "sequential": percentiles(seq),
            "concurrent": {**percentiles(conc), "clients": concurrent, "uploads_per_s": len(conc) / wall}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--run", required=True)
    a = ap.parse_args()
    print(json.dumps(measure(a.dir, a.run)))


if __name__ == "__main__":
    main()
