"""Publish stage: predictions + metrics + a sample of images -> ``site/`` (a static web map).

The page works from ``file://`` (no server, no network): data sits in a JSON block inside
``index.html``, the basemap is drawn from GeoNames places that ship with the project's
dependencies (``deeploc.geonames``). User text (titles) is untrusted: it is URL-decoded here, embedded as JSON with ``<``,
``>`` and ``&`` escaped, and the page only ever writes it with ``textContent``.
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from urllib.parse import unquote_plus

import numpy as np
import pandas as pd

from deeploc import commit, images, runs
from deeploc.bucket import Bucket
from deeploc.geonames import load_places
from deeploc.lake import Lake
from deeploc.predict import HIERARCHY

log = logging.getLogger(__name__)
THUMB = 160


def safe_json(obj) -> str:
    """JSON that cannot close the surrounding <script> element or open markup."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _http_url(url) -> str | None:
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def basemap(min_population: int = 30_000) -> list[float]:
    """Populated places as a flat [lat, lon, ...] list at 0.5 degree resolution: a dot map of the world."""
    p = load_places()
    keep = p.population >= min_population
    grid = np.unique(np.round(np.stack([p.lat[keep], p.lon[keep]], axis=1) * 2) / 2, axis=0)
    return grid.ravel().tolist()


def _thumbnail(bucket: Bucket, key: str, path: str) -> bool:
    from PIL import Image

    try:
        rgb = images.read_rgb(bucket, key)
    except images.Unreadable:
        return False
    img = Image.fromarray(rgb)
    img.thumbnail((THUMB, THUMB))
    img.save(path, "JPEG", quality=85)  # re-encoded: the site never serves the original bytes
    return True


def points(pred: pd.DataFrame, outputs: list[str]) -> list[dict]:
    out = []
    for r in pred.itertuples(index=False):
        rec = {"id": int(r.photo_id), "lat": round(float(r.latitude), 5), "lon": round(float(r.longitude), 5),
               "title": unquote_plus(r.title or ""), "url": _http_url(r.page_url), "license": r.license_name,
               "pred": {o: [round(float(getattr(r, f"{o}_lat")), 4), round(float(getattr(r, f"{o}_lon")), 4),
                            round(float(getattr(r, f"{o}_km")), 1)] for o in outputs}}
        out.append(rec)
    return out


def run(lake: str, bucket: Bucket, run: str | None = None, max_points: int = 1000, max_images: int = 300,
        seed: int = 0) -> dict:
    """Build the web map of a run's predictions; publish ``site/``."""
    lake = Lake(lake)
    run_name = runs.resolve(lake, run)
    pred = lake.read_parquet(lake.path("predictions", run_name))
    metrics = lake.read_json(f"metrics/{run_name}/metrics.json")
    summary = lake.read_json(f"models/{run_name}/summary.json")
    outputs = [*summary["order"], HIERARCHY]
    sample = pred.sample(n=min(max_points, len(pred)), random_state=seed).sort_values("photo_id")

    pts = points(sample, outputs)
    shown = 0
    with commit.building(lake, "site") as tmp:
        os.makedirs(os.path.join(tmp, "img"))
        for rec, key in zip(pts, sample["object_key"]):
            if shown < max_images and _thumbnail(bucket, key, os.path.join(tmp, "img", f"{rec['id']}.jpg")):
                rec["img"] = f"img/{rec['id']}.jpg"
                shown += 1
        data = {"run": run_name, "image_set": summary["image_set"], "outputs": outputs, "default_output": HIERARCHY,
                "metrics": metrics["table"], "points": pts, "predicted_total": int(len(pred)), "basemap": basemap(),
                "train": {k: summary[k] for k in ("train_images", "val_images", "best_epoch")}}
        # Read as package resources, so the site builds from the zipped code bundle on EMR too.
        template = resources.files("deeploc") / "site_template"
        html = (template / "index.html").read_text().replace("__DEEPLOC_DATA__", safe_json(data))
        with open(os.path.join(tmp, "index.html"), "w") as f:
            f.write(html)
        for name in ("app.js", "style.css"):
            with open(os.path.join(tmp, name), "wb") as f:
                f.write((template / name).read_bytes())
    index = lake.path("site", "index.html")
    log.info("publish [%s]: %d points, %d thumbnails -> %s", run_name, len(pts), shown, index)
    return {"site": index, "points": len(pts), "images": shown}
