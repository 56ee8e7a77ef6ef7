"""Text lines of bz2 / gzip / plain files as a Spark (Python) data source, decompressed natively.

Why not ``spark.read.text``: Hadoop's splittable bzip2 codec decodes in Java at about half the speed
of libbz2, and YFCC100M ships as bzip2; the metadata stage is meant to run at decompression speed.
Here every task decodes its share with libbz2 / zlib and hands Spark Arrow batches (no Python per
row). Files are cut into chunks by Hadoop's rule, so one 100M-line file still spreads over a cluster:

- a chunk is a byte range of a file (bzip2: the blocks whose magic starts in it; gzip: the whole
  file, which cannot be cut);
- a chunk owns every line whose preceding newline lies in its range (the first chunk also owns the
  file's first line); it reads past its end to finish its last line, and a chunk that does not start
  the file skips everything up to its first newline, which the previous chunk finished.

Each row: ``raw`` (the line's bytes, newline and a trailing CR removed; not yet UTF-8 checked),
``source_file`` and ``position``, which orders lines within a file (chunk index << 32 | line in
chunk). The codec is sniffed from the first bytes, not the file name. With the ``count_dir`` option,
each task also writes how many lines its chunk held, counted from the newlines it decoded: the
parse step's ledger checks its output against these counts.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from deeploc.storage.uris import filesystem, with_scheme

SCHEMA = "raw binary, source_file string, position bigint"
PIECE = 4 << 20                 # bytes read (plain) or decompressed (gzip) at a time


def _visible(path: str, base: str) -> bool:
    return not any(part[:1] in "._" for part in path[len(base):].split("/") if part)


def _glob(fs, pattern: str) -> list:
    """Files matching a glob (``*``, ``?``, ``[..]`` within one path component), on any filesystem."""
    import fnmatch

    from pyarrow import fs as pafs

    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    base = "/".join(parts[:fixed]) or "/"
    try:
        listed = fs.get_file_info(pafs.FileSelector(base, recursive=len(parts) - fixed > 1))
    except FileNotFoundError:
        return []
    return [i for i in listed if i.type == pafs.FileType.File and len(i.path.split("/")) == len(parts)
            and fnmatch.fnmatchcase(i.path, pattern)]


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int
    mtime: float        # seconds since the epoch (S3: LastModified), to notice a changed file


def list_inputs(paths: list[str]) -> list[InputFile]:
    """Every input file: a file, a glob, or a directory (its visible files, recursively), in order."""
    from pyarrow import fs as pafs

    out = []
    for p in paths:
        fs, path = filesystem(p)
        if any(c in path for c in "*?["):
            found = _glob(fs, path)
            if not found:
                raise FileNotFoundError(f"input {p} matches no file")
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"input {p} does not exist")
            if info.type == pafs.FileType.File:
                out.append(_input(p, info))
                continue
            found = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                     if i.type == pafs.FileType.File and _visible(i.path, path)]
            if not found:
                raise FileNotFoundError(f"input directory {p} holds no files")
        out.extend(_input(p, i) for i in sorted(found, key=lambda i: i.path))
    return out


def _input(original: str, info) -> InputFile:
    return InputFile(with_scheme(original, info.path), info.size, info.mtime.timestamp() if info.mtime else 0.0)


def sniff(head: bytes) -> str:
    if head[:3] == b"BZh":
        return "bz2"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return "plain"


@dataclass
class Chunk(InputPartition):
    path: str
    codec: str
    index: int      # chunk number within its file
    start: int      # byte range [start, end) of the file
    end: int
    size: int


def plan(files: list[InputFile], chunk_bytes: int) -> list[Chunk]:
    """The chunks of every file: byte ranges of ``chunk_bytes`` (one per gzip file)."""
    chunks_ = []
    for file in files:
        fs, p = filesystem(file.path)
        with fs.open_input_file(p) as f:
            codec = sniff(f.read(4))
        size = file.size
        step = max(size, 1) if codec == "gzip" else chunk_bytes
        for i, start in enumerate(range(0, max(size, 1), step)):
            chunks_.append(Chunk(file.path, codec, i, start, min(size, start + step), size))
    return chunks_


def _pieces(f, start: int, stop: int):
    f.seek(start)
    while start < stop:
        b = f.read(min(PIECE, stop - start))
        if not b:
            return
        start += len(b)
        yield b


def _gunzip(f, path: str):
    """Decompressed pieces of a gzip file, every member of a multi-member file included."""
    d, open_member = zlib.decompressobj(wbits=31), False
    for b in _pieces(f, 0, f.size()):
        while b:
            open_member = True
            yield d.decompress(b, PIECE)
            b = d.unconsumed_tail
            if d.eof:       # the rest of the input is the next member
                b, d, open_member = d.unused_data, zlib.decompressobj(wbits=31), False
    if open_member:
        rest = d.flush()
        if not d.eof:
            raise ValueError(f"{path}: the gzip stream is truncated")
        yield rest


def texts(f, chunk: Chunk):
    """(own text pieces, the pieces after them) of ``chunk``, both lazy."""
    if chunk.codec == "gzip":
        return _gunzip(f, chunk.path), iter(())
    if chunk.codec == "plain":
        return _pieces(f, chunk.start, chunk.end), _pieces(f, chunk.end, chunk.size)
    from deeploc.sources.bz2_blocks import BlockReader

    blocks = BlockReader(f, chunk.size).blocks_from(chunk.start)
    first_after: list[bytes] = []       # the block that ended the own range, read once

    def own_blocks():
        for block, text in blocks:
            if block.start >= 8 * chunk.end:
                first_after.append(text)
                return
            yield text

    def later_blocks():
        yield from first_after
        for _, text in blocks:
            yield text
    return own_blocks(), later_blocks()


def owned_lines(own, later, first: bool):
    """Pieces of whole lines owned by a chunk: each ends with a newline, except the file's last line."""
    carry, skipping = b"", not first
    for piece in own:
        if skipping:
            k = piece.find(b"\n")
            if k < 0:
                continue
            piece, skipping = piece[k + 1:], False
        cut = piece.rfind(b"\n")
        if cut < 0:
            carry += piece
            continue
        yield carry + piece[:cut + 1]
        carry = piece[cut + 1:]
    if skipping:
        return                              # no newline in the range: no line starts here
    for piece in later:                     # finish the line begun in this chunk
        k = piece.find(b"\n")
        if k >= 0:
            yield carry + piece[:k + 1]
            return
        carry += piece
    if carry:
        yield carry


def to_batch(text: bytes, source: str, pos0: int):
    """An Arrow batch of the lines in ``text`` (vectorised: no Python per line)."""
    import numpy as np
    import pyarrow as pa

    arr = np.frombuffer(text, np.uint8)
    nl = np.flatnonzero(arr == 10)
    ends = nl if text.endswith(b"\n") else np.append(nl, len(arr))
    starts = np.concatenate(([0], nl + 1))[:len(ends)]
    cr = (ends > starts) & (arr[ends - 1] == 13)
    keep = np.ones(len(arr), bool)
    keep[nl] = False
    keep[ends[cr] - 1] = False
    offsets = np.concatenate(([0], np.cumsum(ends - cr - starts))).astype(np.int32)
    n = len(ends)
    raw = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(arr[keep])])
    src = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([source])).cast(pa.string())
    return pa.RecordBatch.from_arrays([raw, src, pa.array(pos0 + np.arange(n, dtype=np.int64))],
                                      ["raw", "source_file", "position"])


def read_chunk(chunk: Chunk, count_dir: str | None = None):
    """The Arrow batches of one chunk; with ``count_dir``, then a note of how many lines it held."""
    fs, p = filesystem(chunk.path)
    lines = 0
    with fs.open_input_file(p) as f:
        for text in owned_lines(*texts(f, chunk), first=chunk.start == 0):
            batch = to_batch(text, chunk.path, (chunk.index << 32) + lines)
            lines += batch.num_rows
            yield batch
    if count_dir is not None:
        write_count(count_dir, chunk, lines)


def write_count(count_dir: str, chunk: Chunk, lines: int) -> None:
    """One small file per chunk (a retried task writes the same one again)."""
    import hashlib

    name = f"{hashlib.sha1(chunk.path.encode()).hexdigest()[:16]}-{chunk.index}.json"
    fs, p = filesystem(count_dir)
    fs.create_dir(p, recursive=True)
    with fs.open_output_stream(f"{p}/{name}", compression=None) as out:
        out.write(json.dumps({"path": chunk.path, "chunk": chunk.index, "lines": lines}).encode())


def read_counts(count_dir: str) -> dict[str, int]:
    """Lines per input file, from the notes the tasks left in ``count_dir``."""
    from pyarrow import fs as pafs

    fs, p = filesystem(count_dir)
    totals: dict[str, int] = {}
    for info in fs.get_file_info(pafs.FileSelector(p, allow_not_found=True)):
        with fs.open_input_stream(info.path, compression=None) as f:
            note = json.loads(f.read())
        totals[note["path"]] = totals.get(note["path"], 0) + note["lines"]
    return totals


def head(paths: list[str], n: int) -> list[bytes]:
    """The first ``n`` lines of the inputs, in order, read on the caller's side (no Spark job)."""
    out: list[bytes] = []
    for file in list_inputs(paths):             # planned one by one: most inputs are never opened
        for batch in read_chunk(plan([file], 1 << 62)[0]):
            out.extend(batch.column(0).to_pylist()[:n - len(out)])
            if len(out) >= n:
                return out
    return out


class LinesReader(DataSourceReader):
    def __init__(self, options):
        self.paths = json.loads(options["paths"])
        self.chunk_bytes = int(options.get("chunk_bytes", 64 << 20))
        self.count_dir = options.get("count_dir") or None

    def partitions(self):
        return plan(list_inputs(self.paths), self.chunk_bytes)

    def read(self, partition: Chunk):
        yield from read_chunk(partition, self.count_dir)


class Lines(DataSource):
    """``spark.read.format("deeploc_lines").option("paths", json list).load()``"""

    @classmethod
    def name(cls):
        return "deeploc_lines"

    def schema(self):
        return SCHEMA

    def reader(self, schema):
        return LinesReader(self.options)


def read_lines(spark, paths: list[str], chunk_bytes: int = 64 << 20, count_dir: str | None = None):
    """Every line of ``paths`` as (raw binary, source_file, position); see the module docstring."""
    spark.dataSource.register(Lines)
    reader = spark.read.format(Lines.name()).option("paths", json.dumps(paths)).option("chunk_bytes", str(chunk_bytes))
    return (reader.option("count_dir", count_dir) if count_dir else reader).load()
