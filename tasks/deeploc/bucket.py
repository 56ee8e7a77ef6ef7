"""The image bucket: a local folder laid out like ``s3://multimedia-commons/`` or a real S3 bucket.

Listing is by the three-character hash prefix under ``data/images/`` (at most 4,096 of them): one
listing call per 1,000 keys instead of one request per image.
"""

from __future__ import annotations

import os
from typing import Iterator
from urllib.parse import urlparse

from deeploc.yfcc import IMAGE_PREFIX


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def _s3_client(unsigned: bool = False):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    # Adaptive retries back off on 503 SlowDown and transient errors before giving up.
    cfg = Config(retries={"max_attempts": 10, "mode": "adaptive"}, signature_version=UNSIGNED if unsigned else None)
    return boto3.client("s3", endpoint_url=os.environ.get("DEEPLOC_S3_ENDPOINT_URL") or None, config=cfg)


def _split(location: str) -> tuple[str, str]:
    u = urlparse(location)
    return u.netloc, u.path.lstrip("/")


def list_prefix(location: str, prefix: str, unsigned: bool = False) -> tuple[bool, list[tuple[str, int]]]:
    """(prefix folder exists, [(key, size)]) for ``data/images/<prefix>/`` of the bucket."""
    if is_s3(location):
        bucket, root = _split(location)
        pages = _s3_client(unsigned).get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=os.path.join(root, IMAGE_PREFIX, prefix) + "/")
        strip = len(root) + 1 if root else 0
        found = [(o["Key"][strip:], int(o["Size"])) for page in pages for o in page.get("Contents", [])]
        return bool(found), found  # S3 has no folders: a prefix exists when something is under it
    base = os.path.join(location, IMAGE_PREFIX, prefix)
    if not os.path.isdir(base):
        return False, []
    found = []
    for sub in os.scandir(base):
        if sub.is_dir():
            for f in os.scandir(sub.path):
                if f.is_file():
                    found.append((f"{IMAGE_PREFIX}/{prefix}/{sub.name}/{f.name}", f.stat().st_size))
    return True, found


def listing_rows(location: str, prefixes: Iterator[str], unsigned: bool = False):
    """Rows (prefix, key, size) for Spark; a prefix that exists but is empty yields (prefix, None, None)."""
    for p in prefixes:
        exists, objects = list_prefix(location, p, unsigned)
        if exists:
            yield (p, None, None)
            for key, size in objects:
                yield (p, key, size)


def read_object(location: str, key: str, unsigned: bool = False, client=None) -> bytes:
    if is_s3(location):
        bucket, root = _split(location)
        client = client or _s3_client(unsigned)
        return client.get_object(Bucket=bucket, Key=os.path.join(root, key))["Body"].read()
    with open(os.path.join(location, key), "rb") as f:
        return f.read()
