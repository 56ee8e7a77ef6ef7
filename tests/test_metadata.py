"""Metadata stage: crafted rows for every reject reason, both layouts, three compressions, real rows."""

import bz2
import glob
import gzip
import os

import pandas as pd
import pytest
from deeploc import yfcc
from deeploc.lake import Lake, LedgerError
from deeploc.stages import metadata

UPLOAD_2010 = 1278000000  # 2010-07-01


def row25(line, pid, lon="2.35", lat="48.85", marker="0", upload=UPLOAD_2010, url=None, given_hash=None):
    url = f"http://farm1.staticflickr.com/1/{pid}_abc.jpg" if url is None else url
    h = yfcc.flickr_hash(url) if given_hash is None else given_hash
    f = [str(line), str(pid), h, "1@N00", "nick", "2010-06-01 10:00:00.0", str(upload), "cam", "t%3Cb%3E", "d",
         "tags", "", lon, lat, "16", f"http://www.flickr.com/photos/1@N00/{pid}/", url, "Attribution License",
         "http://creativecommons.org/licenses/by/2.0/", "1", "1", "abc", "def", "jpg", marker]
    return "\t".join(f)


def as23(line25):
    f = line25.split("\t")
    return "\t".join(f[1:2] + f[3:])


CRAFTED = [
    (row25(0, 1001), None),
    (row25(1, 1002, lon="", lat=""), "no_coordinates"),
    (row25(2, 1003, lat="91.5"), "bad_coordinates"),
    (row25(3, 1004, lon="east"), "bad_coordinates"),
    (row25(4, 1005, lat="NaN"), "bad_coordinates"),
    (row25(5, 1006, marker="1"), "video"),
    (row25(6, 1007, url=""), "no_download_url"),
    (row25(7, 1008, given_hash="00ff"), "hash_mismatch"),
    (row25(8, 1001), "duplicate_id"),
    (row25(9, 1009, upload="yesterday"), "bad_upload_time"),
    ("0\t1010\tonly\tfour", "bad_field_count"),
    (row25(11, 1011) + "\textra", "bad_field_count"),
    (row25(12, 1012, marker="7"), "bad_marker"),
    (row25(13, 1013).replace("\tnick\t", "\tnick\udcff\t"), None),  # invalid UTF-8 in user text: kept
]


def _write(path, lines, compression):
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n"  # "\udcff" becomes a raw 0xFF byte
    opener = {"bz2": bz2.open, "gz": gzip.open, "plain": open}[compression]
    with opener(path, "wb") as f:
        f.write(data)


def _rejects(lake_root):
    return pd.read_parquet(os.path.join(lake_root, "rejects", "metadata"))


@pytest.mark.parametrize("layout,compression", [(25, "bz2"), (25, "gz"), (25, "plain"), (23, "bz2")])
def test_every_reject_reason(spark, tmp_path, layout, compression):
    lines = [ln if layout == 25 else as23(ln) for ln, _ in CRAFTED if not (layout == 23 and ln.startswith("0\t1010"))]
    expected = [r for ln, r in CRAFTED if not (layout == 23 and ln.startswith("0\t1010"))]
    if layout == 23:  # no hash column: a mismatch cannot be seen, the row is clean
        expected = [None if r == "hash_mismatch" else r for r in expected]
    src = tmp_path / f"in.{compression}"
    _write(src, lines, compression)
    ledger = metadata.run([str(src)], str(tmp_path / "lake"))
    assert ledger["layout"] == layout
    assert ledger["in"] == len(lines)
    assert ledger["out"] == expected.count(None)
    want = pd.Series([r for r in expected if r]).value_counts().to_dict()
    assert ledger["rejects"] == want
    assert _rejects(tmp_path / "lake")["reject_reason"].value_counts().to_dict() == want
    out = pd.read_parquet(tmp_path / "lake" / "metadata")
    assert sorted(out["photo_id"]) == sorted({1001, 1013} | ({1008} if layout == 23 else set()))
    first = out[out["photo_id"] == 1001].iloc[0]
    assert first["object_key"] == yfcc.object_key(yfcc.flickr_hash("http://farm1.staticflickr.com/1/1001_abc.jpg"))
    assert first["title"] == "t%3Cb%3E"  # raw, still URL-encoded: decoding belongs where it is shown
    assert str(first["upload_time"]).startswith("2010-07-01")


def test_forced_layout_mismatch_rejects_all(spark, tmp_path):
    src = tmp_path / "in.tsv"
    _write(src, [row25(0, 1), row25(1, 2)], "plain")
    ledger = metadata.run([str(src)], str(tmp_path / "lake"), layout=23)
    assert ledger["out"] == 0 and ledger["rejects"] == {"bad_field_count": 2}


def test_slices_are_replaced_not_duplicated(spark, tmp_path):
    lines = [row25(i, 5000 + i, upload=UPLOAD_2010 + (i % 2) * 31_600_000) for i in range(20)]  # 2010 and 2011
    lines.append("garbage line")
    src = tmp_path / "in.tsv"
    _write(src, lines, "plain")
    lake = str(tmp_path / "lake")
    a = metadata.run([str(src)], lake, "2010-01-01", "2011-01-01")
    b = metadata.run([str(src)], lake, "2011-01-01", "2012-01-01")
    again = metadata.run([str(src)], lake, "2010-01-01", "2011-01-01")
    assert a == {**again, "written_at": a["written_at"]}
    assert a["out"] == 10 and b["out"] == 10
    out = pd.read_parquet(os.path.join(lake, "metadata"))
    assert len(out) == 20 and out["photo_id"].is_unique
    rej = _rejects(lake)
    assert len(rej) == 1 and rej["reject_reason"].iloc[0] == "bad_field_count"  # undated: once, in 'unknown'
    assert not glob.glob(os.path.join(lake, "metadata", "_*"))  # no staging left behind


def test_duplicate_in_another_slice_is_rejected(spark, tmp_path):
    src = tmp_path / "in.tsv"
    _write(src, [row25(0, 77, upload=UPLOAD_2010), row25(1, 77, upload=UPLOAD_2010 + 31_600_000)], "plain")
    ledger = metadata.run([str(src)], str(tmp_path / "lake"), "2011-01-01", "2012-01-01")
    assert ledger["out"] == 0 and ledger["rejects"] == {"duplicate_id": 1}


def test_ledger_must_add_up(tmp_path):
    from deeploc.lake import record_ledger

    with pytest.raises(LedgerError):
        record_ledger(Lake(str(tmp_path)), "metadata", "x", 10, 5, {"video": 4})


def test_bad_slice_bounds_are_refused(spark, tmp_path):
    with pytest.raises(ValueError, match="month starts"):
        metadata.run([str(tmp_path / "x")], str(tmp_path / "lake"), "2010-01-15", "2011-01-01")


def test_real_rows(spark, tmp_path, shared_sample):
    ledger = metadata.run([str(shared_sample)], str(tmp_path / "lake"))
    assert ledger["layout"] == 25 and ledger["in"] == 600 and ledger["out"] == 92
    assert ledger["rejects"] == {"no_coordinates": 508}  # in particular: no hash_mismatch on real rows
    out = pd.read_parquet(tmp_path / "lake" / "metadata")
    raw = pd.read_csv(shared_sample, sep="\t", header=None, dtype=str, quoting=3, keep_default_na=False)
    given = dict(zip(raw[1].astype("int64"), raw[2]))
    assert all(given[p] == h for p, h in zip(out["photo_id"], out["hash"]))
