"""Facts of the YFCC100M metadata format and the multimedia-commons object-key rule."""

from __future__ import annotations

import hashlib

# The official 25-column release; the 23-column variant drops ``line`` and ``hash``.
COLUMNS_25 = [
    "line", "photo_id", "hash", "user_nsid", "user_nickname", "date_taken", "date_uploaded",
    "capture_device", "title", "description", "user_tags", "machine_tags", "longitude", "latitude",
    "accuracy", "page_url", "download_url", "license_name", "license_url", "server_id", "farm_id",
    "secret", "secret_original", "extension_original", "marker",
]
COLUMNS_23 = [c for c in COLUMNS_25 if c not in ("line", "hash")]
LAYOUTS = {25: COLUMNS_25, 23: COLUMNS_23}

IMAGE_PREFIX = "data/images"


def flickr_hash(download_url: str) -> str:
    """MD5 of the UTF-8 URL, each byte in lowercase hex *without* zero padding (28-32 chars).

    This is how the multimedia-commons bucket names its objects; the usual 32-char hexdigest
    matches only about a third of real rows.
    """
    return "".join(format(b, "x") for b in hashlib.md5(download_url.encode("utf-8")).digest())


def object_key(h: str) -> str:
    """The image's key in the bucket: ``data/images/<h[0:3]>/<h[3:6]>/<h>.jpg``."""
    return f"{IMAGE_PREFIX}/{h[0:3]}/{h[3:6]}/{h}.jpg"
