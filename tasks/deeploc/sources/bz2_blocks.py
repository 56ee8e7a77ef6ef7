"""Random access to the blocks of a bzip2 file, so that one big file splits across many tasks and
each block is decompressed by the native libbz2 (through Python's ``bz2``).

A bzip2 stream is a 4-byte header, blocks that each start with the 48-bit magic 0x314159265359 and
their 32-bit CRC at any *bit* offset, then an end-of-stream magic 0x177245385090 and the combined
CRC. A block therefore runs from its magic to the next magic of either kind. To decompress one block
alone, its bits are copied behind a fresh header and followed by an end-of-stream marker whose
combined CRC, for a one-block stream, is the block's own CRC: libbz2 then checks both CRCs, so a
wrong cut or a corrupt block fails loudly instead of yielding wrong text.

Hadoop's splittable bzip2 codec finds blocks the same way, but decodes them in Java at about half
the speed of libbz2 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import bz2
from dataclasses import dataclass

BLOCK_MAGIC = 0x314159265359
END_MAGIC = 0x177245385090
# "BZh9": the largest block size, so a block from a stream of any level fits the decoder.
_HEADER = int.from_bytes(b"BZh9", "big")


def _patterns(magic: int) -> list[tuple[bytes, int]]:
    """For each bit shift k, the 5 whole bytes the magic covers when it starts k bits into a byte."""
    out = []
    for k in range(8):
        window = magic << (8 - k)                     # 56 bits: the magic at bits [k, k+48)
        out.append((((window >> 8) & ((1 << 40) - 1)).to_bytes(5, "big"), k))
    return out


_SEARCH = [(p, k, m) for m in (BLOCK_MAGIC, END_MAGIC) for p, k in _patterns(m)]


def _bits(data: bytes, pos: int, n: int) -> int:
    """The ``n`` bits of ``data`` starting at bit ``pos`` (big-endian, as bzip2 writes them)."""
    first, last = pos // 8, (pos + n + 7) // 8
    chunk = int.from_bytes(data[first:last], "big")
    return (chunk >> (8 * (last - first) - (pos - 8 * first) - n)) & ((1 << n) - 1)


def find_magics(data: bytes, base_bit: int = 0) -> list[tuple[int, int]]:
    """Every (bit offset, magic) in ``data`` for both magics, sorted; offsets count from ``base_bit``.

    Searches the 5 whole bytes of each of the 8 bit alignments with ``bytes.find`` (C speed), then
    checks all 48 bits. A chance match inside compressed data has odds of 2**-48 per bit; a false
    cut is then caught by the CRC check when the block is decompressed.
    """
    found = set()
    for pattern, k, magic in _SEARCH:
        i = data.find(pattern, 1)
        while i >= 0:
            pos = 8 * (i - 1) + k
            if 8 * len(data) - pos >= 48 and _bits(data, pos, 48) == magic:
                found.add((base_bit + pos, magic))
            i = data.find(pattern, i + 1)
    return sorted(found)


@dataclass(frozen=True)
class Block:
    start: int   # bit offset of the block magic in the file
    end: int     # bit offset of the next magic (block or end of stream)
    crc: int


def decompress_block(data: bytes, block: Block, base_bit: int = 0) -> bytes:
    """The text of one block, decoded by libbz2 as a one-block stream; ``data`` starts at ``base_bit``."""
    start = block.start - base_bit
    n = block.end - block.start
    body = _bits(data, start, n)                   # magic + CRC + Huffman-coded block
    stream = (((_HEADER << n) | body) << 80) | (END_MAGIC << 32) | block.crc
    total = 32 + n + 80
    pad = -total % 8
    return bz2.decompress((stream << pad).to_bytes((total + pad) // 8, "big"))


class BlockReader:
    """The blocks of one bzip2 file, read through a seekable binary file (pyarrow or local).

    ``blocks_from(byte)`` yields the blocks whose magic starts at or after that byte, in order,
    reading ahead in windows and keeping only the unfinished block; so a task reads about its own
    share of the file plus the block it needs past its end to finish its last line.
    """

    def __init__(self, f, size: int, window: int = 4 << 20):
        self.f, self.size, self.window = f, size, window

    def _read(self, offset: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(min(self.window, self.size - offset))

    def blocks_from(self, offset: int):
        """(Block, text) for each block starting at or after byte ``offset``, to the end of the file."""
        base, data = offset, self._read(offset)
        searched = 0            # bytes of data searched; the next search overlaps it by a magic's span
        last = -1               # bit offset of the last magic taken
        magics: list[tuple[int, int]] = []
        while True:
            eof = base + len(data) >= self.size
            start = max(0, searched - 8)
            for pos, magic in find_magics(data[start:], 8 * (base + start)):
                if pos > last:
                    magics.append((pos, magic))
                    last = pos
            searched = len(data)
            while len(magics) >= 2:
                pos, magic = magics.pop(0)
                if magic == BLOCK_MAGIC:
                    crc = _bits(data, pos - 8 * base + 48, 32)
                    block = Block(pos, magics[0][0], crc)
                    yield block, decompress_block(data, block, 8 * base)
            if eof:
                if magics and magics[0][1] == BLOCK_MAGIC:
                    raise ValueError(f"bzip2 block at bit {magics[0][0]} has no end: the file is truncated")
                return
            keep = magics[0][0] // 8 - base if magics else max(0, len(data) - 8)
            searched -= keep
            data, base = data[keep:] + self._read(base + len(data)), base + keep
