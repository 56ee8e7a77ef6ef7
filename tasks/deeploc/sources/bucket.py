"""The image bucket: a local folder laid out like ``s3://multimedia-commons/`` or an S3 bucket.

Listing is by the three-character hash prefix under ``data/images/`` (at most 4,096 of them): one
listing request per 1,000 keys instead of one request per image. A ``Bucket`` is a small picklable
value, so Spark tasks get the endpoint and credentials mode with the closure rather than from an
environment that their worker processes may not share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from deeploc.sources.yfcc import IMAGE_PREFIX
from deeploc.storage.uris import is_s3, s3_client, split_s3

# The public bucket's region; also the default for any other S3 bucket unless DEEPLOC_S3_REGION says otherwise.
DEFAULT_REGION = "us-west-2"
MAX_ATTEMPTS = 10


class ObjectMissing(FileNotFoundError):
    """The object is not in the bucket (any more)."""


class ListingFailed(RuntimeError):
    """A prefix could not be listed even after retries: the stage must fail, not go on partial."""


@dataclass(frozen=True)
class Bucket:
    location: str                       # a local folder, or s3://bucket[/prefix]
    unsigned: bool = False              # anonymous requests (the public multimedia-commons bucket)
    endpoint_url: str | None = None     # an S3-compatible endpoint (moto, MinIO, ...); None = AWS
    region: str = DEFAULT_REGION
    max_attempts: int = MAX_ATTEMPTS    # per request, with adaptive backoff

    @classmethod
    def of(cls, location: str, unsigned: bool = False, endpoint_url: str | None = None) -> "Bucket":
        """Settings not given explicitly come from DEEPLOC_S3_ENDPOINT_URL / DEEPLOC_S3_REGION."""
        return cls(location, unsigned, endpoint_url or os.environ.get("DEEPLOC_S3_ENDPOINT_URL") or None,
                   os.environ.get("DEEPLOC_S3_REGION", DEFAULT_REGION))

    @property
    def is_s3(self) -> bool:
        return is_s3(self.location)

    def _split(self) -> tuple[str, str]:
        return split_s3(self.location)

    def _key(self, key: str) -> str:
        root = self._split()[1]
        return f"{root}/{key}" if root else key

    def client(self):
        return s3_client(self.endpoint_url, self.unsigned, self.region, self.max_attempts)

    def list_prefix(self, prefix: str) -> tuple[bool, list[tuple[str, int]]]:
        """(prefix exists, [(key, size)]) for ``data/images/<prefix>/``."""
        if not self.is_s3:
            return _list_local(self.location, prefix)
        from botocore.exceptions import BotoCoreError, ClientError

        name, root = self._split()
        strip = len(root) + 1 if root else 0
        try:
            pages = self.client().get_paginator("list_objects_v2").paginate(
                Bucket=name, Prefix=self._key(f"{IMAGE_PREFIX}/{prefix}/"))
            found = [(o["Key"][strip:], int(o["Size"])) for page in pages for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise ListingFailed(f"listing {self.location}/{IMAGE_PREFIX}/{prefix}/ failed after "
                                f"{self.max_attempts} attempts: {exc}") from exc
        return bool(found), found  # S3 has no folders: a prefix exists when something is under it

    def listing_rows(self, prefixes: Iterable[str]) -> Iterator[tuple]:
        """Rows (prefix, key, size) for Spark; an existing prefix also yields (prefix, None, None)."""
        for p in prefixes:
            exists, objects = self.list_prefix(p)
            if exists:
                yield (p, None, None)
                for key, size in objects:
                    yield (p, key, size)

    def list_prefix_exists(self, prefix: str) -> bool:
        """Whether anything is under ``data/images/<prefix>/`` (one 1-key listing on S3)."""
        if not self.is_s3:
            return os.path.isdir(os.path.join(self.location, IMAGE_PREFIX, prefix))
        name, _ = self._split()
        resp = self.client().list_objects_v2(Bucket=name, Prefix=self._key(f"{IMAGE_PREFIX}/{prefix}/"), MaxKeys=1)
        return resp.get("KeyCount", 0) > 0

    def head(self, key: str) -> int | None:
        """Size of one object, or None when it does not exist (the per-object check)."""
        if not self.is_s3:
            path = os.path.join(self.location, key)
            return os.path.getsize(path) if os.path.isfile(path) else None
        from botocore.exceptions import ClientError

        name, _ = self._split()
        try:
            return int(self.client().head_object(Bucket=name, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read(self, key: str) -> bytes:
        if not self.is_s3:
            with open(os.path.join(self.location, key), "rb") as f:
                return f.read()
        from botocore.exceptions import ClientError

        name, _ = self._split()
        try:
            return self.client().get_object(Bucket=name, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ObjectMissing(f"{self.location}/{key}") from None
            raise


def _list_local(location: str, prefix: str) -> tuple[bool, list[tuple[str, int]]]:
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
