"""Locations: a local path or an ``s3://bucket/key`` URI, and the pyarrow file system for either.

The one place that parses S3 URIs; the lake, the image bucket, the line reader and the aws target use it.
"""

from __future__ import annotations

import functools
import os
import re

_S3 = re.compile(r"s3://([^/]+)/?(.*)")


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> (``bucket``, ``some/key``); the key has no leading or trailing slash."""
    m = _S3.fullmatch(uri)
    if not m:
        raise ValueError(f"not an s3:// location: {uri!r}")
    return m.group(1), m.group(2).strip("/")


def filesystem(location: str):
    """(pyarrow file system, path on it) for a local path or an ``s3://`` URI.

    S3 takes region and credentials from the environment or the instance role, and
    ``AWS_ENDPOINT_URL`` for S3-compatible stores (moto in the tests).
    """
    from pyarrow import fs

    if "://" in location:
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), os.path.abspath(location)


def with_scheme(original: str, fs_path: str) -> str:
    """A path listed on ``original``'s file system, written the way ``original`` was (s3:// stays a URI)."""
    return f"{original.split('://', 1)[0]}://{fs_path}" if "://" in original else fs_path


@functools.lru_cache(maxsize=8)
def s3_client(endpoint_url: str | None = None, unsigned: bool = False, region: str | None = None,
              max_attempts: int = 10):
    """One boto3 S3 client per process and setting (clients are thread-safe and costly to make).
    Adaptive retries back off on 503 SlowDown, throttling and transient network errors. Without an
    explicit endpoint, boto3 takes ``AWS_ENDPOINT_URL`` from the environment (moto in the tests)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    cfg = Config(retries={"max_attempts": max_attempts, "mode": "adaptive"}, max_pool_connections=32,
                 signature_version=UNSIGNED if unsigned else None)
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg)
