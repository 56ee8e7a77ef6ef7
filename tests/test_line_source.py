"""The line reader: bzip2 blocks decoded alone, chunks that own each line exactly once, line counts
per chunk, Spark parity."""

import bz2
import gzip
import io
import os
import random

import pytest
from deeploc.sources import bz2_blocks, line_source


def _lines(n, seed=3):
    """Random byte lines: empty ones, lines longer than a bzip2 block, bytes that are not UTF-8, CRs."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        r = rnd.random()
        if r < 0.02:
            out.append(b"")
        elif r < 0.025:
            out.append(b"x" * rnd.randint(1, 400_000))
        else:
            out.append(rnd.randbytes(rnd.randint(1, 200)).replace(b"\n", b"a").rstrip(b"\r"))
    return out


def _expected(text: bytes) -> list[bytes]:
    lines = text.split(b"\n")
    if text.endswith(b"\n") or not text:
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _read_all(path, chunk_bytes, count_dir=None):
    rows = []
    for chunk in line_source.plan(line_source.list_inputs([path]), chunk_bytes):
        for batch in line_source.read_chunk(chunk, count_dir):
            rows.extend(zip(batch.column("raw").to_pylist(), batch.column("position").to_pylist()))
    return rows


def test_each_block_decodes_alone_and_they_add_up_to_the_file():
    text = b"\n".join(_lines(3000))
    data = bz2.compress(text, 1) + bz2.compress(b"a second stream\n", 5)   # multi-stream, like pbzip2
    for window in (4096, 1 << 20):
        blocks = list(bz2_blocks.BlockReader(io.BytesIO(data), len(data), window).blocks_from(0))
        assert len(blocks) > 3
        assert b"".join(t for _, t in blocks) == text + b"a second stream\n"
    # From the middle: the first block returned starts at or after that byte.
    later = list(bz2_blocks.BlockReader(io.BytesIO(data), len(data)).blocks_from(len(data) // 2))
    assert later[0][0].start >= 8 * (len(data) // 2)
    assert (text + b"a second stream\n").endswith(b"".join(t for _, t in later))


def test_a_truncated_gzip_file_fails_loudly(tmp_path):
    (tmp_path / "t.gz").write_bytes(gzip.compress(b"\n".join(_lines(2000)))[:-100])
    with pytest.raises(ValueError, match="truncated"):
        _read_all(str(tmp_path / "t.gz"), 1 << 20)


def test_a_corrupt_or_truncated_block_fails_loudly():
    data = bytearray(bz2.compress(b"\n".join(_lines(2000)), 1))
    with pytest.raises(ValueError, match="truncated"):
        list(bz2_blocks.BlockReader(io.BytesIO(bytes(data[:-200])), len(data) - 200).blocks_from(0))
    data[len(data) // 3] ^= 0xFF
    with pytest.raises((OSError, ValueError)):
        list(bz2_blocks.BlockReader(io.BytesIO(bytes(data)), len(data)).blocks_from(0))


@pytest.mark.parametrize("newline_at_end", [True, False])
def test_every_line_is_read_once_whatever_the_chunk_size(tmp_path, newline_at_end):
    text = b"\n".join(_lines(4000)) + (b"\n" if newline_at_end else b"")
    half = len(text) // 2
    files = {
        "a.bz2": bz2.compress(text, 1),
        "b.gz": gzip.compress(text[:half]) + gzip.compress(text[half:]),   # two gzip members
        "c.tsv": text,
        "d": bz2.compress(text, 9),                                        # codec sniffed, not named
        "e.tsv": text.replace(b"\n", b"\r\n"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        for chunk_bytes in (30_000, 1 << 30):
            counts = tmp_path / f"counts-{name}-{chunk_bytes}"
            rows = _read_all(str(tmp_path / name), chunk_bytes, str(counts))
            assert [r for r, _ in rows] == _expected(text), (name, chunk_bytes)
            positions = [p for _, p in rows]
            assert positions == sorted(positions) and len(set(positions)) == len(positions)
            # the per-chunk notes add up to the lines of the file, counted here from the bytes
            assert line_source.read_counts(str(counts)) == {str(tmp_path / name): len(_expected(text))}


def test_directories_expand_and_missing_inputs_are_named(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "one.tsv").write_bytes(b"1\n2\n")
    (tmp_path / "in" / "_SUCCESS").write_bytes(b"")
    (tmp_path / "in" / "empty.tsv").write_bytes(b"")
    files = line_source.list_inputs([str(tmp_path / "in")])
    assert [(os.path.basename(f.path), f.size) for f in files] == [("empty.tsv", 0), ("one.tsv", 4)]
    assert files[1].mtime == pytest.approx(os.path.getmtime(tmp_path / "in" / "one.tsv"))
    assert line_source.head([str(tmp_path / "in")], 10) == [b"1", b"2"]
    assert [os.path.basename(f.path) for f in line_source.list_inputs([str(tmp_path / "i*" / "o?e.tsv")])] == ["one.tsv"]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        line_source.list_inputs([str(tmp_path / "in" / "*.bz2")])
    with pytest.raises(FileNotFoundError, match="nothere"):
        line_source.list_inputs([str(tmp_path / "nothere")])


@pytest.mark.slow  # every compression through a Spark job
def test_spark_reads_what_spark_text_reads(spark, tmp_path):
    text = b"\n".join(line for line in _lines(3000) if b"\r" not in line) + b"\n"
    (tmp_path / "t.tsv").write_bytes(text)
    (tmp_path / "t.bz2").write_bytes(bz2.compress(text, 1))
    ours = line_source.read_lines(spark, [str(tmp_path / "t.bz2"), str(tmp_path / "t.tsv")], chunk_bytes=50_000)
    assert ours.rdd.getNumPartitions() > 2
    got = sorted(r["raw"] for r in ours.collect())
    want = sorted(r["value"] for r in spark.read.format("text").option("wholetext", False)
                  .load(str(tmp_path / "t.tsv")).selectExpr("cast(value as binary) as value").collect())
    assert got == sorted(want * 2)
