"""Publish stage: a run's predictions, metrics and a sample of its photos -> ``site/``, the web map.

A Leaflet map with Natural Earth's country outlines, all served from the site's own folder (no CDN,
no tile server; a tile layer can be configured for people online), that works from ``file://``: the
data sits in a JSON block inside ``index.html`` and the outlines in a script file. ``deeploc serve``
serves the same folder and adds the upload of your own photo.

User text (titles, names) is untrusted: it is URL-decoded here, embedded as JSON with ``<``, ``>`` and
``&`` escaped, and the page only ever writes it as text; links are kept only when http(s). The page
carries its Content-Security-Policy in a ``<meta>`` tag too, for when it is opened from ``file://``.

The vendor files sit in a folder named by their content's hash, so a server may let browsers keep them
for a year; place names (the largest GeoNames cities) label the map from a middle zoom on.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
from importlib import resources
from urllib.parse import unquote_plus

import pandas as pd

from pyiceberg.expressions import EqualTo

from deeploc.earth import cell_shapes, geography, geonames
from deeploc.earth.partitioning import Partitionings
from deeploc.learn.predict import HIERARCHY, outputs_of
from deeploc.sources import images
from deeploc.sources.bucket import Bucket
from deeploc.storage import catalog, commit, runs
from deeploc.storage.lake import Lake
from deeploc.web import assets, site_policy

log = logging.getLogger(__name__)
THUMB = 160
SHOWN = 100          # photos on the map at a time; "shuffle" draws another 100 from the pool
PLACES = 600         # city names on the map, largest first
VENDOR = {"leaflet/dist/leaflet.js": "leaflet.js", "leaflet/dist/leaflet.css": "leaflet.css",
          "leaflet.markercluster/dist/leaflet.markercluster.js": "leaflet.markercluster.js",
          "leaflet.markercluster/dist/MarkerCluster.css": "MarkerCluster.css",
          "leaflet.markercluster/dist/MarkerCluster.Default.css": "MarkerCluster.Default.css",
          **{f"leaflet/dist/images/{n}": f"images/{n}" for n in ("marker-icon.png", "marker-icon-2x.png",
                                                                 "marker-shadow.png", "layers.png", "layers-2x.png")}}


def safe_json(obj) -> str:
    """JSON that cannot close the surrounding <script> element or open markup."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def http_url(url) -> str | None:
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def text(value) -> str:
    return unquote_plus(value) if isinstance(value, str) else ""


def _thumbnail(bucket: Bucket, key: str, path: str) -> bool:
    from PIL import Image

    try:
        rgb = images.read_rgb(bucket, key, min_side=THUMB)
    except images.Unreadable:
        return False
    img = Image.fromarray(rgb)
    img.thumbnail((THUMB, THUMB))
    img.save(path, "JPEG", quality=85)  # re-encoded: the site never serves the original bytes
    return True


def points(pred: pd.DataFrame, outputs: list[str]) -> list[dict]:
    """One record per photo: truth (and its country), attribution, and per output the predicted class,
    place, country, error and top-k."""
    lat, lon = pred["latitude"].to_numpy(float), pred["longitude"].to_numpy(float)
    countries = {o: geography.locate(pred[f"{o}_lat"].to_numpy(float), pred[f"{o}_lon"].to_numpy(float)).country
                 for o in outputs}
    countries[None] = geography.locate(lat, lon).country
    out = []
    for i, r in enumerate(pred.to_dict(orient="records")):
        rec = {"id": int(r["photo_id"]), "lat": round(float(r["latitude"]), 5), "lon": round(float(r["longitude"]), 5),
               "country": countries[None][i], "title": text(r.get("title")), "author": text(r.get("user_nickname")),
               "url": http_url(r.get("page_url")), "license": r.get("license_name") or "",
               "license_url": http_url(r.get("license_url")), "pred": {}}
        for o in outputs:
            top = [[int(c), round(float(p), 5)] for c, p in zip(r[f"{o}_topk_class"], r[f"{o}_topk_prob"])]
            rec["pred"][o] = {"c": int(r[f"{o}_class"]), "lat": round(float(r[f"{o}_lat"]), 4),
                              "lon": round(float(r[f"{o}_lon"]), 4), "km": round(float(r[f"{o}_km"]), 1),
                              "country": countries[o][i], "top": top}
        out.append(rec)
    return out


def places(n: int = PLACES) -> list[list]:
    """The ``n`` most populous GeoNames places: [name, lat, lon], largest first."""
    p = geonames.load_places()
    return [[p.city[i], round(float(p.lat[i]), 3), round(float(p.lon[i]), 3)]
            for i in p.population.argsort()[::-1][:n]]


def cells(lake: Lake, model: str, order: list[str]) -> dict:
    """Per partitioning, per class of the model: [token, mean lat, mean lon, outline, radius km]."""
    parts = Partitionings.read(model, order, lake)
    return {p: [[t, round(float(la), 4), round(float(lo), 4), cell_shapes.outline(t), round(float(r), 1)]
                for t, la, lo, r in parts.of(p)[["token", "mean_lat", "mean_lon", "radius_km"]].itertuples(index=False)]
            for p in order}


def copy_assets(out: str) -> str:
    """Leaflet, marker clustering (npm packages) and the country outlines (``geography``) into ``vendor/<hash>/``
    (the hash of their bytes, so a new version is a new URL); returns that folder, relative to ``out``."""
    files = {dst: assets.path(src).read_bytes() for src, dst in VENDOR.items()}
    outlines = json.dumps(geography.outlines_geojson(), separators=(",", ":"))  # cut at 180°: no band across the map
    files["countries.js"] = f"window.DEEPLOC_COUNTRIES = {outlines};\n".encode()  # a script: file:// can load it
    digest = hashlib.sha256(b"".join(hashlib.sha256(f"{k}\0".encode() + v).digest() for k, v in sorted(files.items())))
    folder = f"vendor/{digest.hexdigest()[:12]}"
    for dst, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(out, folder, dst)), exist_ok=True)
        with open(os.path.join(out, folder, dst), "wb") as f:
            f.write(data)
    return folder


def removal_effect(lake: Lake, run: str) -> dict | None:
    """The current Table 4 when this run is one of its pair (the site shows it), else None."""
    effect = commit.current(lake, "comparisons/removal_effect")
    table = json.loads(lake.read_bytes(f"{effect}/table4.json")) if effect else None
    if not table or run not in (table["full_run"], table["removal_run"]):
        return None
    return {k: table[k] for k in ("full_run", "removal_run", "face_threshold", "photos", "rows")}


def run(lake: str, bucket: Bucket, run: str | None = None, pool: int = 1000, tiles: str | None = None,
        seed: int = 0) -> dict:
    """Build the web map of a run's predictions; publish ``site/``."""
    tiles = site_policy.tile_url(tiles)  # a bad URL stops here, before anything is built
    lake = Lake(lake)
    run_name = runs.resolve(lake, run)
    model = commit.require(lake, f"models/{run_name}", "train")
    summary = json.loads(lake.read_bytes(f"{model}/summary.json"))
    measured = commit.require(lake, f"metrics/{run_name}", "evaluate")
    metrics = json.loads(lake.read_bytes(f"{measured}/metrics.json"))
    outputs = outputs_of(summary)
    pred, _ = catalog.read(lake, "predictions", where=EqualTo("run", run_name), writer="infer")
    pred = pred[pred["latitude"].notna()]
    sample = pred.sample(n=min(pool, len(pred)), random_state=seed).sort_values("photo_id")
    pts = points(sample, outputs)
    with commit.building(lake, "site") as out:
        os.makedirs(os.path.join(out, "img"))
        shown = 0
        for rec, key in zip(pts, sample["object_key"]):
            if _thumbnail(bucket, key, os.path.join(out, "img", f"{rec['id']}.jpg")):
                rec["img"] = f"img/{rec['id']}.jpg"
                shown += 1
        pts = [p for p in pts if "img" in p]  # the gallery shows photos; one that cannot be read is left out
        os.makedirs(os.path.join(out, "figures"))
        for name in metrics.get("figures", []):
            with open(os.path.join(out, "figures", name), "wb") as f:
                f.write(lake.read_bytes(f"{measured}/{name}"))
        vendor = copy_assets(out)
        data = {"run": run_name, "image_set": summary["image_set"], "photos": metrics.get("photos"),
                "split_rule": summary.get("split_rule"), "outputs": outputs, "default_output": HIERARCHY,
                "order": summary["order"], "metrics": metrics["table"], "by_continent": metrics.get("by_continent", []),
                "by_country": metrics.get("by_country", []),
                "figures": [f"figures/{n}" for n in metrics.get("figures", [])], "cells": cells(lake, model, summary["order"]),
                "pool": pts, "shown": SHOWN, "seed": seed, "predicted_total": int(len(pred)), "tiles": tiles, "places": places(),
                "train": {k: summary[k] for k in ("train_images", "val_images", "best_epoch")},
                "removal_effect": removal_effect(lake, run_name)}
        # Read as package resources, so the site builds from the installed wheel on EMR too.
        template = resources.files("deeploc") / "site_template"
        page = (template / "index.html").read_text().replace("__DEEPLOC_DATA__", safe_json(data)).replace(
            "__DEEPLOC_VENDOR__", vendor).replace("__DEEPLOC_CSP__", html.escape(site_policy.content_security_policy(tiles, meta=True)))
        with open(os.path.join(out, "index.html"), "w") as f:
            f.write(page)
        for name in ("app.js", "style.css"):
            with open(os.path.join(out, name), "wb") as f:
                f.write((template / name).read_bytes())
        with open(os.path.join(out, "site.json"), "w") as f:  # what deeploc serve needs to know (its CSP)
            json.dump({"run": run_name, "tiles": tiles}, f)
    index = f"{commit.current(lake, 'site')}/index.html"
    log.info("publish [%s]: %d photos in the pool (%d shown at a time) -> %s", run_name, len(pts), SHOWN, index)
    return {"site": index, "points": len(pts), "images": shown}
