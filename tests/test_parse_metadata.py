"""Parse and metadata stages: crafted rows for every reject reason, both layouts, three compressions,
incremental parsing, slices, the transforms on tiny frames, and the real rows."""

import bz2
import gzip
import os
import shutil

import pandas as pd
import pytest
from conftest import table
from deeploc.sources import yfcc
from deeploc.stages import metadata, parse
from deeploc.storage.lake import Lake
from deeploc.storage.ledger import LedgerError, record

UPLOAD_2010 = 1278000000  # 2010-07-01
ONE_YEAR = 31_600_000


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


# (line, the stage that rejects it, why); None: the row reaches metadata/.
CRAFTED = [
    (row25(0, 1001), None, None),
    (row25(1, 1002, lon="", lat=""), "metadata", "no_coordinates"),
    (row25(2, 1003, lat="91.5"), "metadata", "bad_coordinates"),
    (row25(3, 1004, lon="east"), "metadata", "bad_coordinates"),
    (row25(4, 1005, lat="NaN"), "metadata", "bad_coordinates"),
    (row25(5, 1006, marker="1"), "metadata", "video"),
    (row25(6, 1007, url=""), "metadata", "no_download_url"),
    (row25(7, 1008, given_hash="00ff"), "metadata", "hash_mismatch"),
    (row25(8, 1001), "metadata", "duplicate_id"),
    (row25(9, 1009, upload="yesterday"), "parse", "bad_upload_time"),
    (row25(10, 1010, upload="99999999999999"), "parse", "bad_upload_time"),   # past year 9999
    ("0\t1010\tonly\tfour", "parse", "bad_field_count"),
    (row25(11, 1011) + "\textra", "parse", "bad_field_count"),
    (row25(12, 1012, marker="7"), "metadata", "bad_marker"),
    (row25(13, 1013).replace("\tnick\t", "\tnick\udcff\t"), None, None),  # invalid UTF-8 in user text: kept
    (row25(14, "15x"), "parse", "bad_photo_id"),
    (row25(15, 1016, upload="0"), None, None),                            # 1970: kept, outside 2004-2014
]


def _write(path, lines, compression):
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n"  # "\udcff" becomes a raw 0xFF byte
    opener = {"bz2": bz2.open, "gz": gzip.open, "plain": open}[compression]
    with opener(path, "wb") as f:
        f.write(data)


def _counts(rows, stage):
    return pd.Series([why for _, s, why in rows if s == stage], dtype=object).value_counts().to_dict()


@pytest.mark.parametrize("layout,compression", [(25, "bz2"), (25, "gz"), (25, "plain"), (23, "bz2")])
def test_every_reject_reason_split_between_parse_and_metadata(spark, tmp_path, layout, compression):
    rows = [r for r in CRAFTED if not (layout == 23 and r[0].startswith("0\t1010"))]
    if layout == 23:  # no hash column: a mismatch cannot be seen, the row is clean
        rows = [(line, None, None) if why == "hash_mismatch" else (line, s, why) for line, s, why in rows]
    lines = [line if layout == 25 else as23(line) for line, _, _ in rows]
    src, lake = tmp_path / f"in.{compression}", str(tmp_path / "lake")
    _write(src, lines, compression)

    parsed = parse.run([str(src)], lake)
    assert (parsed["in"], parsed["rejects"]) == (len(lines), _counts(rows, "parse"))
    assert parsed["rows_before_2004"] == 1 and parsed["first_month"] == "1970-01"  # kept, and counted
    meta = metadata.run(lake)
    assert meta["in"] == parsed["out"]
    assert meta["rejects"] == _counts(rows, "metadata")
    assert parsed["rejected"] + meta["rejected"] + meta["out"] == len(lines)  # the two ledgers cover the input

    out = table(tmp_path / "lake", "metadata")
    assert sorted(out["photo_id"]) == sorted({1001, 1013, 1016} | ({1008} if layout == 23 else set()))
    first = out[out["photo_id"] == 1001].iloc[0]
    assert first["object_key"] == yfcc.object_key(yfcc.flickr_hash("http://farm1.staticflickr.com/1/1001_abc.jpg"))
    assert first["title"] == "t%3Cb%3E"  # raw, still URL-encoded: decoding belongs where it is shown
    assert str(first["upload_time"]).startswith("2010-07-01") and first["user_nsid"] == "1@N00"
    rej = table(tmp_path / "lake", "rejects/parse")  # the raw lines, as they were written
    assert sorted(rej["raw"]) == sorted(written for written, (_, s, _) in zip(lines, rows) if s == "parse")


def test_metadata_transform_on_a_tiny_frame(spark):
    """The rules alone, on rows built here: no lake, no parse."""
    url = "http://farm1.staticflickr.com/1/7_abc.jpg"
    base = {"photo_id": 7, "given_hash": None, "url_hash": yfcc.flickr_hash(url), "marker": 0,
            "coordinates_given": True, "longitude": 10.0, "latitude": 20.0, "source_file": "f", "position": 0}
    cases = [({}, None), ({"marker": 1}, "video"), ({"marker": None}, "bad_marker"), ({"url_hash": None}, "no_download_url"),
             ({"given_hash": "abc"}, "hash_mismatch"), ({"coordinates_given": False, "longitude": None, "latitude": None},
                                                        "no_coordinates"),
             ({"latitude": -90.5}, "bad_coordinates"), ({"longitude": 180.0}, None), ({"position": 5}, "duplicate_id")]
    rows = [{**base, **change, "photo_id": 7 if change.get("position") else 100 + i} for i, (change, _) in enumerate(cases)]
    schema = ("photo_id long, given_hash string, url_hash string, marker int, coordinates_given boolean, "
              "longitude double, latitude double, source_file string, position long")
    frame = spark.createDataFrame([tuple(r[c.split()[0]] for c in schema.split(", ")) for r in rows], schema)
    duplicates = spark.createDataFrame([(7, "f", 0)], "photo_id long, first_file string, first_position long")
    got = {r["photo_id"]: (r["reject_reason"], r["hash"]) for r in metadata.transform(frame, duplicates).collect()}
    assert [got[r["photo_id"]][0] for r in rows] == [why for _, why in cases]


def test_parse_transform_on_tiny_lines(spark):
    lines = spark.createDataFrame([(row25(0, 5).encode(), "f", 0), (b"a\tb", "f", 1),
                                   (row25(2, 6, upload="-5").encode(), "f", 2)],
                                  "raw binary, source_file string, position long")
    got = {r["position"]: r for r in parse.transform(lines, 25).collect()}
    assert (got[0]["reject_reason"], got[0]["upload_month"], got[0]["photo_id"]) == (None, "2010-07", 5)
    # the built-in derivation of the bucket's file stem equals the Python rule (checked on real rows too)
    assert got[0]["url_hash"] == yfcc.flickr_hash("http://farm1.staticflickr.com/1/5_abc.jpg")
    assert (got[1]["reject_reason"], got[1]["upload_month"], got[1]["raw"]) == ("bad_field_count", None, "a\tb")
    assert got[2]["upload_month"] == "1969-12" and got[2]["raw"] is None  # kept: a time, however early


def test_slices_are_replaced_not_duplicated(spark, tmp_path):
    lines = [row25(i, 5000 + i, upload=UPLOAD_2010 + (i % 2) * ONE_YEAR) for i in range(20)]  # 2010 and 2011
    lines.append("garbage line")
    _write(tmp_path / "in.tsv", lines, "plain")
    lake = str(tmp_path / "lake")
    assert parse.run([str(tmp_path / "in.tsv")], lake)["rejects"] == {"bad_field_count": 1}
    a = metadata.run(lake, "2010-01-01", "2011-01-01")
    b = metadata.run(lake, "2011-01-01", "2012-01-01")
    again = metadata.run(lake, "2010-01-01", "2011-01-01")
    assert a == {**again, "written_at": a["written_at"]} and a["scope"] == "2010"
    assert a["out"] == 10 and b["out"] == 10
    out = table(lake, "metadata")
    assert len(out) == 20 and out["photo_id"].is_unique


def test_duplicate_in_another_slice_is_rejected(spark, tmp_path):
    _write(tmp_path / "in.tsv", [row25(0, 77, upload=UPLOAD_2010), row25(1, 77, upload=UPLOAD_2010 + ONE_YEAR)], "plain")
    parse.run([str(tmp_path / "in.tsv")], str(tmp_path / "lake"))
    ledger = metadata.run(str(tmp_path / "lake"), "2011-01-01", "2012-01-01")
    assert ledger["out"] == 0 and ledger["rejects"] == {"duplicate_id": 1}


def test_parse_is_incremental_and_slices_never_read_the_raw_files(spark, tmp_path):
    raw, lake = tmp_path / "raw", str(tmp_path / "lake")
    raw.mkdir()
    _write(raw / "a.tsv", [row25(i, 100 + i) for i in range(5)], "plain")
    _write(raw / "b.tsv", [row25(i, 200 + i) for i in range(3)], "plain")
    assert parse.run([str(raw)], lake)["parsed_now"] == 2
    unchanged = parse.run([str(raw)], lake)
    assert (unchanged["parsed_now"], unchanged["out"]) == (0, 8)
    _write(raw / "b.tsv", [row25(i, 300 + i) for i in range(4)], "plain")  # b changes: only b is parsed again
    os.utime(raw / "b.tsv", (1_900_000_000, 1_900_000_000))
    changed = parse.run([str(raw)], lake)
    assert (changed["parsed_now"], changed["out"]) == (1, 9)
    shutil.move(str(raw), str(tmp_path / "elsewhere"))  # the slice runs on the parsed table alone
    ledger = metadata.run(lake, "2010-01-01", "2011-01-01")
    assert ledger["in"] == 9 and ledger["out"] == 9
    ids = set(table(lake, "metadata")["photo_id"])
    assert ids == {100, 101, 102, 103, 104, 300, 301, 302, 303}


def test_files_gone_from_the_input_stay_counted_until_pruned(spark, tmp_path):
    raw, lake = tmp_path / "raw", str(tmp_path / "lake")
    raw.mkdir()
    _write(raw / "a.tsv", [row25(i, 100 + i) for i in range(5)], "plain")
    _write(raw / "b.tsv", [row25(0, 200), "0\t1\tonly\tfour"], "plain")
    parse.run([str(raw)], lake)
    kept = parse.run([str(raw / "a.tsv")], lake)  # b left the input: its rows stay, and are counted
    assert (kept["in"], kept["earlier_files"], kept["earlier_rows"]) == (5, 1, 1)
    assert metadata.run(lake, "2010-01-01", "2011-01-01")["in"] == 6
    pruned = parse.run([str(raw / "a.tsv")], lake, prune=True)
    assert (pruned["in"], pruned["earlier_files"], pruned["repeated_photo_ids"]) == (5, 0, 0)
    assert metadata.run(lake, "2010-01-01", "2011-01-01")["in"] == 5
    assert os.listdir(os.path.join(lake, "_parse", "sources")) == [f"{parse.source_id(str(raw / 'a.tsv'))}.json"]
    assert set(table(lake, "parsed")["photo_id"]) == {100, 101, 102, 103, 104}
    assert table(lake, "rejects/parse").empty  # b's malformed line went with it


def test_ledger_must_add_up(tmp_path):
    with pytest.raises(LedgerError):
        record(Lake(str(tmp_path)), "metadata", "x", 10, 5, {"video": 4})


def test_bad_slice_bounds_are_refused(spark, tmp_path):
    with pytest.raises(ValueError, match="month starts"):
        metadata.run(str(tmp_path / "lake"), "2010-01-15", "2011-01-01")


def test_a_slice_before_parse_says_what_to_run(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="run parse first"):
        metadata.run(str(tmp_path / "lake"), "2010-01-01", "2011-01-01")


def test_real_rows(spark, tmp_path, shared_sample):
    lake = str(tmp_path / "lake")
    parsed = parse.run([str(shared_sample)], lake)
    assert (parsed["in"], parsed["out"], parsed["rejected"]) == (600, 600, 0)
    ledger = metadata.run(lake)
    assert ledger["in"] == 600 and ledger["out"] == 92
    assert ledger["rejects"] == {"no_coordinates": 508}  # in particular: no hash_mismatch on real rows
    out = table(tmp_path / "lake", "metadata")
    raw = pd.read_csv(shared_sample, sep="\t", header=None, dtype=str, quoting=3, keep_default_na=False)
    given = dict(zip(raw[1].astype("int64"), raw[2]))
    assert all(given[p] == h for p, h in zip(out["photo_id"], out["hash"]))
