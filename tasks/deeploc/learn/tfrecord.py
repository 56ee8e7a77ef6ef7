"""TFRecord files of ``tf.train.Example`` records, written without TensorFlow: the shards stage runs on
Spark's Python workers (and on the aws target's core nodes), and the plan sizes records on the Airflow
worker; neither should pay TensorFlow's import (seconds and half a gigabyte per process) to write bytes.
Training reads the files with ``tf.data.TFRecordDataset``."""

from __future__ import annotations

import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8  # TFRecord's masked CRC32C: rotate right by 15, add this (mod 2**32)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int64 is written as protobuf writes it: ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (a message, bytes, a string or packed numbers)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def example(jpeg: bytes, photo_id: int, classes: dict[str, int]) -> bytes:
    """One shard record as a serialized ``tf.train.Example``: ``image``, ``photo_id`` and ``class_<name>``.
    Example{features: Features{feature: map<string, Feature>}}; Feature{bytes_list = 1, int64_list = 3},
    each a list whose values are field 1 (int64s packed)."""
    feature = {"image": _field(1, _field(1, jpeg)), "photo_id": _field(3, _field(1, _varint(int(photo_id)))),
               **{f"class_{k}": _field(3, _field(1, _varint(int(v)))) for k, v in classes.items()}}
    entries = b"".join(_field(1, _field(1, name.encode()) + _field(2, value)) for name, value in feature.items())
    return _field(1, entries)


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def frame(record: bytes) -> bytes:
    """A record as a TFRecord file holds it: its length (uint64, little-endian), the length's masked CRC32C,
    the bytes, their masked CRC32C."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)
