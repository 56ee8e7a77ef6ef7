"""Generate the demo data set: YFCC100M-format metadata (bz2), a bucket-shaped image folder, a manifest.

Every defect is planted at an exact count (not drawn per row), and the manifest lists, for every
metadata line, which stage must reject it and why, so tests can check the pipeline's counts exactly.
Faces are planted by construction (a real face pasted at a known box); whether the detector finds
them is for the tests to measure, not something the generator arranges.

Output under ``out``::

    metadata/yfcc100m_dataset-NN.bz2     the 25-column official layout, tab-separated
    bucket/data/images/<h[0:3]>/<h[3:6]>/<h>.jpg   laid out like s3://multimedia-commons/
    manifest.json                        parameters, planted defects, expected counts
    expected.csv                         one row per metadata line: expected outcome
"""

from __future__ import annotations

import bz2
import csv
import json
import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote_plus

import numpy as np

from deeploc.demo import places as places_mod
from deeploc.demo.render import paste_face, render_scene
from deeploc.earth.geonames import load_places
from deeploc.progress import Progress
from deeploc.sources import yfcc
from deeploc.sources.images import encode_jpeg

log = logging.getLogger(__name__)

# Raised whenever the generator's output changes, so that ``reuse`` never keeps a set made by another.
GENERATOR_VERSION = 3
PHOTO_QUALITY = 88  # the bucket's photos, like camera JPEGs resized by Flickr
YEARS = list(range(2004, 2015))
# Flickr uploads grew over the decade; the weights give every yearly slice some rows.
YEAR_WEIGHTS = np.array([1, 2, 4, 7, 10, 12, 13, 14, 14, 13, 10], dtype=float)
LICENSES = [
    ("Attribution License", "http://creativecommons.org/licenses/by/2.0/"),
    ("Attribution-ShareAlike License", "http://creativecommons.org/licenses/by-sa/2.0/"),
    ("Attribution-NonCommercial-NoDerivs License", "http://creativecommons.org/licenses/by-nc-nd/2.0/"),
]
DEVICES = ["Canon+EOS+400D+Digital", "NIKON+D90", "Apple+iPhone+4", "Panasonic+DMC-ZS10", ""]
# Untrusted user text as it really occurs: markup in titles and descriptions must be escaped when shown.
HOSTILE_TITLES = ['<script>alert("owned")</script>', '<img src=x onerror=alert(1)>', '"><b>bold</b>']


@dataclass(frozen=True)
class DefectRates:
    """Shares of all rows (metadata defects) or of clean photo rows (bucket defects)."""

    no_coordinates: float = 0.25
    video: float = 0.02
    bad_field_count: float = 0.01
    bad_coordinates: float = 0.01
    no_download_url: float = 0.005
    hash_mismatch: float = 0.005
    duplicate_id: float = 0.01
    invalid_utf8: float = 0.005       # not a defect: such rows must pass
    missing_object: float = 0.01
    empty_object: float = 0.005
    tiny_object: float = 0.005
    corrupt_jpeg: float = 0.01
    face: float = 0.05


@dataclass
class Row:
    line: int
    photo_id: int
    upload: int
    lat: float | None
    lon: float | None
    place: int
    user: int = 0              # the uploader: a user's photos are taken around their home place
    marker: int = 0
    stage: str = ""            # stage expected to reject the row ("" = reaches the faces output)
    reason: str = ""
    bucket_defect: str = ""
    face: bool = False
    extra: dict = field(default_factory=dict)


def _count(rate: float, n: int) -> int:
    return int(round(rate * n))


def year_span(text: str) -> tuple[int, int]:
    """``"2007-2011"`` (or one year, ``"2010"``): the first and last upload year of a demo set, within
    YFCC100M's 2004-2014."""
    if not re.fullmatch(r"\d{4}(-\d{4})?", text):
        raise ValueError(f"demo years {text!r}: give the first and last year, e.g. 2007-2011")
    first, _, last = text.partition("-")
    return _checked((int(first), int(last or first)))


def _checked(span: tuple[int, int]) -> tuple[int, int]:
    if not YEARS[0] <= span[0] <= span[1] <= YEARS[-1]:
        raise ValueError(f"demo years {span[0]}-{span[1]}: the first and last year, in order, within {YEARS[0]}-{YEARS[-1]}")
    return span


def _upload_times(rng: np.random.Generator, n: int, span: tuple[int, int]) -> np.ndarray:
    chosen = slice(YEARS.index(span[0]), YEARS.index(span[1]) + 1)
    weights = YEAR_WEIGHTS[chosen]
    years = rng.choice(YEARS[chosen], size=n, p=weights / weights.sum())
    start = np.array([datetime(y, 1, 1, tzinfo=timezone.utc).timestamp() for y in years])
    end = np.array([datetime(y + 1, 1, 1, tzinfo=timezone.utc).timestamp() for y in years])
    return (start + rng.uniform(0, 1, n) * (end - start - 1)).astype(np.int64)


def _plan(rng: np.random.Generator, n: int, rates: DefectRates, span: tuple[int, int]) -> list[Row]:
    """Decide every row's fate; duplicates are copies appended after their original."""
    n_dup = _count(rates.duplicate_id, n)
    base = n - n_dup
    # Users with a home place each; some upload far more than others (a heavy tail, as on Flickr), and
    # a user's photos are taken within a few km of home: the near-duplicates a split must keep together.
    n_users = max(10, base // 6)
    home_lat, home_lon, home_place = places_mod.sample_locations(rng, n_users)
    weight = 1.0 / np.arange(1, n_users + 1) ** 0.8
    user = rng.choice(n_users, size=base, p=weight / weight.sum())
    lat, lon = places_mod.jitter(rng, home_lat[user], home_lon[user], 2.0)
    uploads = _upload_times(rng, base, span)
    # Distinct ids in Flickr's range: a sorted random walk with positive steps, then shuffled.
    ids = rng.permutation(10**9 + np.cumsum(rng.integers(1, 10**6, base)))
    rows = [Row(0, int(ids[i]), int(uploads[i]), float(lat[i]), float(lon[i]), int(home_place[user[i]]), int(user[i]))
            for i in range(base)]

    order = rng.permutation(base)
    cursor = 0

    def take(k: int) -> list[Row]:
        nonlocal cursor
        picked = [rows[i] for i in order[cursor:cursor + k]]
        cursor += k
        return picked

    for reason, stage in [("bad_field_count", "parse"), ("video", "metadata"),
                          ("no_download_url", "metadata"), ("hash_mismatch", "metadata"),
                          ("no_coordinates", "metadata"), ("bad_coordinates", "metadata")]:
        for r in take(_count(getattr(rates, reason), n)):
            r.stage, r.reason = stage, reason
            if reason == "video":
                r.marker = 1
            elif reason == "no_coordinates":
                r.lat = r.lon = None
    clean = [r for r in rows if not r.stage]
    for r in take(_count(rates.invalid_utf8, n)):
        r.extra["invalid_utf8"] = True
    rng.shuffle(clean)
    c = 0
    for defect, reason in [("missing_object", "missing_object"), ("empty_object", "too_small"),
                           ("tiny_object", "too_small"), ("corrupt_jpeg", "undecodable")]:
        k = _count(getattr(rates, defect), len(clean))
        for r in clean[c:c + k]:
            r.bucket_defect = defect
            r.stage, r.reason = ("faces" if defect == "corrupt_jpeg" else "availability"), reason
        c += k
    for r in clean[c:c + _count(rates.face, len(clean))]:
        r.face = True

    # Duplicates: a later copy of a row that is otherwise clean at the metadata stage.
    originals = [r for r in rows if r.stage not in ("parse", "metadata")]
    for src in rng.choice(len(originals), size=n_dup, replace=False):
        o = originals[src]
        rows.append(Row(0, o.photo_id, o.upload, o.lat, o.lon, o.place, o.user, stage="metadata",
                        reason="duplicate_id", extra={"duplicate_of": o.photo_id}))
    # Shuffle, then put every duplicate somewhere behind its original, so "first occurrence kept"
    # is well defined (linear: each duplicate is attached to a row index at or after its original).
    rows = [rows[i] for i in rng.permutation(len(rows))]
    dups = [r for r in rows if r.reason == "duplicate_id"]
    rows = [r for r in rows if r.reason != "duplicate_id"]
    first = {r.photo_id: i for i, r in enumerate(rows)}
    after: dict[int, list[Row]] = {}
    for d in dups:
        after.setdefault(int(rng.integers(first[d.photo_id], len(rows))), []).append(d)
    rows = [x for i, r in enumerate(rows) for x in [r, *after.get(i, [])]]
    for i, r in enumerate(rows):
        r.line = i
    return rows


def _urls(rng: np.random.Generator, photo_id: int) -> dict:
    farm, server = int(rng.integers(1, 10)), int(rng.integers(1000, 9999))
    secret = "".join(rng.choice(list("0123456789abcdef"), 10))
    secret_o = "".join(rng.choice(list("0123456789abcdef"), 10))
    return {"farm": farm, "server": server, "secret": secret, "secret_o": secret_o,
            "download": f"http://farm{farm}.staticflickr.com/{server}/{photo_id}_{secret}.jpg"}


def _line(rng: np.random.Generator, r: Row, urls: dict, names: list[str]) -> bytes:
    """One metadata line in the official 25-column layout, as bytes (some carry invalid UTF-8)."""
    nsid = f"{10_000_000 + 7919 * r.user}@N0{r.user % 9}"
    taken = datetime.fromtimestamp(r.upload - int(rng.integers(0, 400 * 86400)), tz=timezone.utc)
    title = HOSTILE_TITLES[r.line % len(HOSTILE_TITLES)] if r.line % 97 == 5 else f"Trip to {names[r.place]}"
    lon = "" if r.lon is None else f"{r.lon:.6f}"
    lat = "" if r.lat is None else f"{r.lat:.6f}"
    if r.reason == "bad_coordinates":
        # out of range or not a number at all, alternately
        lat, lon = (f"{91 + rng.uniform(0, 50):.6f}", lon) if r.line % 2 else ("north", lon)
    download = "" if r.reason == "no_download_url" else urls["download"]
    h = yfcc.flickr_hash(download) if download else ""
    if r.reason == "hash_mismatch":
        h = h[::-1]
    lic, lic_url = LICENSES[r.photo_id % len(LICENSES)]
    fields = [
        str(r.line), str(r.photo_id), h, nsid, quote_plus(f"user {r.user}"),
        taken.strftime("%Y-%m-%d %H:%M:%S.0"), str(r.upload), DEVICES[r.photo_id % len(DEVICES)],
        quote_plus(title), quote_plus(f"Photo near {names[r.place]}.\nShot on holiday."),
        "travel,holiday", "", lon, lat, "" if r.lat is None else str(int(rng.integers(1, 17))),
        f"http://www.flickr.com/photos/{nsid}/{r.photo_id}/", download, lic, lic_url,
        str(urls["server"]), str(urls["farm"]), urls["secret"], urls["secret_o"], "jpg", str(r.marker),
    ]
    if r.reason == "bad_field_count":
        fields = fields[:int(rng.integers(5, 20))] if r.line % 2 else fields + ["stray"]
    data = "\t".join(fields).encode("utf-8")
    if r.extra.get("invalid_utf8"):
        data = data.replace(b"Shot+on+holiday.", b"Shot+on+holiday.\xff\xfe\xc3")
    return data


def _write_object(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _image_bytes(rng: np.random.Generator, r: Row) -> bytes | None:
    """The object's bytes for its planted condition (None: no object at all)."""
    if r.bucket_defect == "missing_object":
        return None
    if r.bucket_defect == "empty_object":
        return b""
    if r.bucket_defect == "tiny_object":  # Flickr's "photo unavailable" placeholders are tiny
        return encode_jpeg(np.full((8, 8, 3), 200, np.uint8), quality=50)
    if r.bucket_defect == "corrupt_jpeg":
        good = encode_jpeg(render_scene(r.lat, r.lon, rng), PHOTO_QUALITY)
        # Truncated in the middle, or a JPEG header followed by noise; both over 1 KB.
        return good[: max(1500, len(good) // 2)] if r.line % 2 else b"\xff\xd8\xff\xe0" + rng.bytes(3000)
    img = render_scene(r.lat, r.lon, rng)
    if r.face:
        img, r.extra["face_ratio"] = paste_face(img, rng)
    return encode_jpeg(img, PHOTO_QUALITY)


def generate(out: str, rows: int = 3000, seed: int = 7, files: int = 4, rates: DefectRates | None = None,
             reuse: bool = False, images: bool = True, years: tuple[int, int] = (YEARS[0], YEARS[-1])) -> dict:
    """Write the demo set under ``out`` (replacing what is there) and return the manifest. Its photos
    were uploaded in ``years`` (first and last, ``year_span``): fewer years, fewer yearly runs to watch.

    With ``reuse``, a complete set already made with the same parameters is kept as it is (the
    generator is deterministic, so it would come out identical).
    """
    rates = rates or DefectRates()
    params = {"rows": rows, "seed": seed, "files": files, "rates": asdict(rates), "images": images,
              "years": list(_checked(years)), "generator": GENERATOR_VERSION}
    manifest_path = os.path.join(out, "manifest.json")
    if reuse and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            existing = json.load(f)
        if existing.get("params") == params:
            log.info("demo set with these parameters already at %s: kept", out)
            return existing
    rng = np.random.default_rng(seed)
    plan = _plan(rng, rows, rates, years)
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    urls = _write_metadata(os.path.join(tmp, "metadata"), rng, plan, files)
    # Without images (benchmarks) the bucket stages' expectations do not apply.
    missing_prefix = _write_bucket(os.path.join(tmp, "bucket"), rng, plan, urls) if images else None
    manifest = _manifest(plan, params, missing_prefix)
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    if images:
        _write_expected(os.path.join(tmp, "expected.csv"), plan)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)  # a killed run never leaves a half-written set under ``out``
    if images:
        log.info("demo set: %d metadata lines, %d images expected usable -> %s",
                 len(plan), manifest["expected"]["faces_out"], out)
    return manifest


def _write_metadata(folder: str, rng, plan: list[Row], files: int) -> dict:
    """The plan's metadata lines, in ``files`` bz2 files like YFCC100M's; each line's URLs ({line: urls})."""
    names = load_places().city
    urls = {r.line: _urls(rng, r.photo_id) for r in plan}
    original = {r.photo_id: r.line for r in plan if r.reason != "duplicate_id"}
    for r in plan:  # a duplicate row is the same photo: same URLs as its original
        if r.reason == "duplicate_id":
            urls[r.line] = urls[original[r.photo_id]]
    lines = [_line(rng, r, urls[r.line], names) for r in plan]
    per_file = -(-len(lines) // files)
    os.makedirs(folder)
    for i in range(files):
        with bz2.open(os.path.join(folder, f"yfcc100m_dataset-{i:02d}.bz2"), "wb") as f:
            for data in lines[i * per_file:(i + 1) * per_file]:
                f.write(data + b"\n")
    return urls


def _write_bucket(bucket: str, rng, plan: list[Row], urls: dict) -> str:
    """The images of the rows that reach the bucket stages, under their object keys, with the plan's
    defects (one prefix left out whole); returns that prefix. Rows whose object turns out to be a
    missing prefix are marked so in the plan."""
    photos = [r for r in plan if r.stage not in ("parse", "metadata")]
    for r in photos:
        r.extra["key"] = yfcc.object_key(yfcc.flickr_hash(urls[r.line]["download"]))
    missing_prefix = _choose_missing_prefix(photos)
    progress = Progress("demo images", len(photos))
    for r in photos:
        prefix = r.extra["key"].split("/")[2]
        if prefix == missing_prefix:
            r.stage, r.reason, r.bucket_defect = "availability", "missing_prefix", "missing_prefix"
            progress.step()
            continue
        data = _image_bytes(rng, r)
        if data is not None:
            _write_object(os.path.join(bucket, r.extra["key"]), data)
        progress.step()
    progress.done()
    for r in photos:
        # A missing object alone in its prefix leaves no folder: indistinguishable from a missing prefix.
        if r.bucket_defect == "missing_object" and not os.path.isdir(os.path.join(bucket, *r.extra["key"].split("/")[:3])):
            r.reason = "missing_prefix"
    return missing_prefix


def _choose_missing_prefix(photos: list[Row]) -> str:
    """The prefix folder to leave out (as ``ac8/`` is missing from the real bucket): the busiest one."""
    counts = Counter(r.extra["key"].split("/")[2] for r in photos)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


STAGES = ("parse", "metadata", "availability", "faces")


def _manifest(plan: list[Row], params: dict, missing_prefix: str | None) -> dict:
    """Expected counts, each enumerated from the rows' planned fates (none derived from another)."""
    by_stage: dict[str, Counter] = {s: Counter() for s in STAGES}
    for r in plan:
        if r.stage:
            by_stage[r.stage][r.reason] += 1
    # A row leaves stage k when it is planted to be rejected there or later (or never).
    passes = lambda stage: sum(1 for r in plan if not r.stage or STAGES.index(r.stage) > STAGES.index(stage))  # noqa: E731
    expected = {"parse_in": len(plan), "parse_out": passes("parse"), "parse_rejects": dict(by_stage["parse"]),
                "metadata_out": passes("metadata"), "metadata_rejects": dict(by_stage["metadata"])}
    if params["images"]:
        expected.update({
            "availability_out": passes("availability"), "availability_rejects": dict(by_stage["availability"]),
            "faces_out": passes("faces"), "faces_rejects": dict(by_stage["faces"]),
            "faces_planted": sum(1 for r in plan if r.face and not r.stage)})
    return {"params": params, "layout": "yfcc100m_dataset 25 columns, bz2", "missing_prefix": missing_prefix,
            "years": params["years"], "expected": expected}


def _write_expected(path: str, plan: list[Row]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["line", "photo_id", "upload_time", "stage", "reason", "face", "face_ratio", "latitude",
                    "longitude"])
        for r in plan:
            planted = r.face and not r.stage
            w.writerow([r.line, r.photo_id, r.upload, r.stage, r.reason, int(planted),
                        f"{r.extra['face_ratio']:.5f}" if planted else "",
                        "" if r.lat is None else f"{r.lat:.6f}", "" if r.lon is None else f"{r.lon:.6f}"])
