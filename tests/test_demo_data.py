import bz2
import csv
import glob
import hashlib
import json
import os

from deeploc.demo.generate import generate
from deeploc.sources import yfcc


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(str(a), rows=200, seed=3, files=2)
    generate(str(b), rows=200, seed=3, files=2)
    generate(str(c), rows=200, seed=4, files=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_reuse_keeps_a_matching_set(tmp_path):
    out = tmp_path / "s"
    generate(str(out), rows=150, seed=1, files=1)
    marker = out / "marker"
    marker.write_text("x")
    generate(str(out), rows=150, seed=1, files=1, reuse=True)
    assert marker.exists()
    generate(str(out), rows=160, seed=1, files=1, reuse=True)
    assert not marker.exists()


def test_manifest_counts_add_up_and_match_the_files(demo_set):
    """Each count in the manifest is enumerated from the rows' planned fates on its own: here they must
    add up from stage to stage, and match what the files hold."""
    out, manifest = demo_set
    e = manifest["expected"]
    assert e["parse_in"] == e["parse_out"] + sum(e["parse_rejects"].values())
    assert e["parse_out"] == e["metadata_out"] + sum(e["metadata_rejects"].values())
    assert e["metadata_out"] == e["availability_out"] + sum(e["availability_rejects"].values())
    assert e["availability_out"] == e["faces_out"] + sum(e["faces_rejects"].values())
    for reason in ("no_coordinates", "video", "bad_coordinates", "duplicate_id", "hash_mismatch", "no_download_url"):
        assert e["metadata_rejects"].get(reason, 0) > 0, reason
    assert e["parse_rejects"]["bad_field_count"] > 0
    assert e["availability_rejects"]["missing_prefix"] > 0 and e["faces_rejects"]["undecodable"] > 0
    assert e["faces_planted"] > 0

    lines = []
    for path in sorted(glob.glob(str(out / "metadata" / "*.bz2"))):
        with bz2.open(path, "rb") as f:
            lines += f.read().splitlines()
    assert len(lines) == e["parse_in"]
    widths = [len(line.split(b"\t")) for line in lines]
    assert sum(w != 25 for w in widths) == e["parse_rejects"]["bad_field_count"]
    good = [line.decode("utf-8", "replace").split("\t") for line in lines if len(line.split(b"\t")) == 25]
    mismatched = sum(r[2] != yfcc.flickr_hash(r[16]) for r in good if r[16])
    assert mismatched == e["metadata_rejects"]["hash_mismatch"]
    assert not os.path.exists(out / "bucket" / "data" / "images" / manifest["missing_prefix"])
    with open(out / "expected.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == e["parse_in"]
    assert sum(r["face"] == "1" for r in rows) == e["faces_planted"]
    sizes = [os.path.getsize(p) for p in glob.glob(str(out / "bucket" / "data" / "images" / "*" / "*" / "*.jpg"))]
    assert min(sizes) == 0 and any(0 < s < 1024 for s in sizes)
    json.dumps(manifest)  # serialisable as written


def test_the_years_bound_every_upload(tmp_path):
    """A set asked for 2008-2009 has its uploads in those two years only, and in both."""
    generate(str(tmp_path / "s"), rows=300, seed=2, files=1, images=False, years=(2008, 2009))
    column = yfcc.LAYOUTS[25].index("date_uploaded")
    with bz2.open(next((tmp_path / "s" / "metadata").glob("*.bz2"))) as f:
        uploads = [int(fields[column]) for fields in (line.split(b"\t") for line in f) if len(fields) == 25]
    assert len(uploads) > 250
    start_2008, start_2009, start_2010 = 1199145600, 1230768000, 1262304000  # UTC, from `date -d ... +%s`
    assert all(start_2008 <= u < start_2010 for u in uploads)
    assert any(u < start_2009 for u in uploads) and any(u >= start_2009 for u in uploads)
