"""The lake's tables: their names, columns and the conventions every stage shares.

Ingestion tables are partitioned by upload month (``upload_month=YYYY-MM`` folders). Every row a
stage reads leaves in its output table or in ``rejects/<stage>/`` with a ``reject_reason``.
"""

from __future__ import annotations

MONTH = "upload_month"          # the folder column of every ingestion table
REASON = "reject_reason"        # null = keep; otherwise why the row left the stage

# parse: the raw metadata lines, typed, with where each came from. ``position`` orders the lines of
# a file (chunk index * 2**32 + line within the chunk; the 0-based line number when the file is read
# as one chunk); ``line`` is the official release's own line-number column (null in the 23-column layout);
# ``url_hash`` is the bucket's file stem derived from the download URL (compared with ``given_hash`` later).
PARSED = ["photo_id", "line", "given_hash", "url_hash", "user_nsid", "user_nickname", "date_taken", "upload_time",
          "title", "longitude", "latitude", "coordinates_given", "accuracy", "page_url", "download_url", "license_name",
          "license_url", "marker", "source_file", "position"]
# rejects/parse keeps the raw line (made valid UTF-8), source_file, position and the reason.

# metadata: clean geotagged photos with their object key in the image bucket.
METADATA = ["photo_id", "hash", "object_key", "longitude", "latitude", "accuracy", "download_url", "upload_time",
            "date_taken", "title", "license_name", "license_url", "page_url", "user_nsid", "user_nickname"]
METADATA_REJECTS = ["photo_id", "source_file", "position"]   # the rest of the row is in parsed/

# images (availability): + whether the object exists and is big enough to be a picture.
IMAGES = METADATA + ["exists", "size_bytes", "usable"]
IMAGES_REJECTS = ["photo_id", "object_key", "size_bytes"]

# faces: + the decoded size and the face ratio (area of the union of face boxes / image area).
FACES = IMAGES + ["width", "height", "face_count", "face_ratio"]
FACES_REJECTS = ["photo_id", "object_key", "detail"]

# The report's two image sets: every image, or those whose face ratio is at most the threshold.
IMAGE_SETS = ("full", "removal")
REMOVAL_THRESHOLD = 0.035


def removal_filter(threshold: float = REMOVAL_THRESHOLD) -> str:
    """SQL / pandas-query predicate keeping the images of the report's ``removal`` set."""
    return f"face_ratio <= {float(threshold)!r}"
