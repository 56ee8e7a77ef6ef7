"""The ingestion stages on the generated demo set: every planted defect found, counts exact, and the
face detector measured against the faces planted by construction."""

import numpy as np
import pandas as pd
from conftest import table
from deeploc.demo.render import paste_face, render_scene
from deeploc.sources import facedetect
from deeploc.storage.tables import removal_filter

# The detector against the planted truth (measured on the demo sets: every planted face found, no
# face found elsewhere, found boxes 1.03-1.30x the planted face box: the cascade's box has a margin).
MIN_HIT_RATE, MAX_FALSE_POSITIVE_RATE, RATIO_RANGE = 0.95, 0.01, (0.8, 1.5)


def test_counts_match_the_manifest(ingested):
    _, e, ledgers = ingested
    assert (ledgers["parse"]["in"], ledgers["parse"]["out"]) == (e["parse_in"], e["parse_out"])
    assert ledgers["parse"]["rejects"] == e["parse_rejects"]
    assert ledgers["metadata"]["in"] == e["parse_out"]
    assert ledgers["metadata"]["out"] == e["metadata_out"]
    assert ledgers["metadata"]["rejects"] == e["metadata_rejects"]
    assert ledgers["availability"]["in"] == e["metadata_out"]
    assert ledgers["availability"]["out"] == e["availability_out"]
    assert ledgers["availability"]["rejects"] == e["availability_rejects"]
    assert ledgers["faces"]["out"] == e["faces_out"]
    assert ledgers["faces"]["rejects"] == e["faces_rejects"]


def test_the_detector_against_the_planted_faces(ingested, demo_set):
    lake, e, _ = ingested
    got = table(lake, "faces", ["photo_id", "face_ratio"])
    planted = pd.read_csv(demo_set[0] / "expected.csv").rename(columns={"face_ratio": "planted_ratio"})
    m = got.merge(planted[["photo_id", "face", "planted_ratio"]], on="photo_id")
    with_face, without = m[m["face"] == 1], m[m["face"] == 0]
    assert len(with_face) == e["faces_planted"] > 0
    hit_rate = (with_face["face_ratio"] > 0).mean()
    false_positive_rate = (without["face_ratio"] > 0).mean()
    found = with_face[with_face["face_ratio"] > 0]
    ratio = found["face_ratio"] / found["planted_ratio"]
    assert hit_rate >= MIN_HIT_RATE, hit_rate
    assert false_positive_rate <= MAX_FALSE_POSITIVE_RATE, false_positive_rate
    assert ratio.between(*RATIO_RANGE).all(), ratio.describe()
    # the report's removal set drops the images with a face (all planted faces are well above 3.5 %)
    removal = got.query(removal_filter())
    assert set(removal["photo_id"]).isdisjoint(set(found["photo_id"]))


def test_rejects_carry_reasons_and_keys(ingested):
    lake, _, _ = ingested
    rej = table(lake, "rejects/faces")
    assert set(rej["reject_reason"]) == {"undecodable"} and rej["detail"].str.len().gt(0).all()
    rej = table(lake, "rejects/availability")
    assert rej["object_key"].str.startswith("data/images/").all()


def test_real_face_and_landscape():
    from skimage import data

    ratio, n = facedetect.face_ratio(data.astronaut())
    # the stated face box of the photograph (95 x 95 of 512 x 512), within the same tolerance
    assert n >= 1 and RATIO_RANGE[0] <= ratio / (95 * 95 / 512 / 512) <= RATIO_RANGE[1]
    rng = np.random.default_rng(0)
    assert facedetect.face_ratio(render_scene(40.0, 10.0, rng))[0] == 0.0
    img, planted = paste_face(render_scene(40.0, 10.0, rng), rng)
    assert RATIO_RANGE[0] <= facedetect.face_ratio(img)[0] / planted <= RATIO_RANGE[1]


def test_availability_transform_on_tiny_frames(spark):
    """The rule alone: a listing built here, one metadata row per outcome."""
    from deeploc.stages import availability

    meta = spark.createDataFrame([(1, "abc1", "data/images/abc/1/abc1.jpg"), (2, "abc2", "data/images/abc/2/abc2.jpg"),
                                  (3, "abc3", "data/images/abc/3/abc3.jpg"), (4, "ff04", "data/images/ff0/4/ff04.jpg")],
                                 "photo_id long, hash string, object_key string")
    listing = spark.createDataFrame([("abc", None, None), ("abc", "data/images/abc/1/abc1.jpg", 5000),
                                     ("abc", "data/images/abc/2/abc2.jpg", 300)], "prefix string, key string, size long")
    got = {r["photo_id"]: (r["reject_reason"], r["exists"], r["usable"])
           for r in availability.transform(meta, listing, min_bytes=1024).collect()}
    assert got == {1: (None, True, True), 2: ("too_small", True, False), 3: ("missing_object", False, None),
                   4: ("missing_prefix", False, None)}


def test_the_tables_read_by_anyone_from_their_metadata(ingested):
    """``deeploc tables --json`` from a shell names each table's metadata file; pyiceberg reads it with
    no catalog and no code of ours, and holds exactly the rows the demo's manifest planned."""
    import json
    import subprocess
    import sys

    from pyiceberg.table import StaticTable

    lake, e, _ = ingested
    res = subprocess.run([sys.executable, "-m", "deeploc.cli", "tables", "--lake", lake, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    tables = {t["table"]: t for t in json.loads(res.stdout)}
    for name, rows in (("metadata", e["metadata_out"]), ("images", e["availability_out"]), ("faces", e["faces_out"]),
                       ("rejects_metadata", sum(e["metadata_rejects"].values())),
                       ("rejects_parse", sum(e["parse_rejects"].values()))):
        found = tables[f"deeploc.{name}"]
        assert found["rows"] == rows, name
        assert StaticTable.from_metadata(found["metadata_location"]).scan().to_arrow().num_rows == rows, name
