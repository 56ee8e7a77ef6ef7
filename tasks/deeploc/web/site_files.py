"""The published site's files as HTTP answers: only regular files inside the folder (no dotfile, no
symlink that leads out), with ETag and Last-Modified (304 on a match), long-lived caching for the
versioned vendor folder, and text files gzipped once and kept in memory (the page's data and the country
outlines are most of a first visit)."""

from __future__ import annotations

import gzip
import mimetypes
import os
from email.utils import formatdate, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

COMPRESSED = {".html", ".js", ".css", ".json", ".svg", ".txt"}
MAX_COMPRESSED_FILE = 32 << 20   # larger text files are sent as they are
VENDOR = "vendor/"               # publish names its subfolders by version: their files never change
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"          # cache, but ask each time (a 304 costs a few bytes)


class SiteFiles:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self._gzipped: dict[str, tuple[str, bytes]] = {}  # path -> (etag, gzip bytes); at most one per site file

    def find(self, url_path: str) -> str | None:
        """The file a URL path names, or None: dotfiles, backslashes and anything resolving outside the
        folder (``..``, a symlink) are not there."""
        parts = [p for p in url_path.split("/") if p] or ["index.html"]
        if any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None
        real = os.path.realpath(os.path.join(self.root, *parts))
        return real if real.startswith(self.root + os.sep) and os.path.isfile(real) else None

    def response(self, request: Request) -> Response:
        path = self.find(request.url.path)
        if path is None:
            return PlainTextResponse("not found", 404)
        st = os.stat(path)
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        headers = {"ETag": etag, "Last-Modified": formatdate(st.st_mtime, usegmt=True),
                   "Cache-Control": IMMUTABLE if request.url.path.lstrip("/").startswith(VENDOR) else REVALIDATE}
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        compress = os.path.splitext(path)[1] in COMPRESSED and st.st_size <= MAX_COMPRESSED_FILE
        if compress:
            headers["Vary"] = "Accept-Encoding"
            if "gzip" in request.headers.get("accept-encoding", ""):
                headers["ETag"] = etag = etag[:-1] + '-gz"'
                headers["Content-Encoding"] = "gzip"
        if not_modified(request, etag, st.st_mtime):
            return Response(status_code=304, headers=headers)
        if "Content-Encoding" in headers:
            return Response(self._gzip(path, etag), headers=headers, media_type=ctype)
        return FileResponse(path, headers=headers, media_type=ctype, stat_result=st)

    def _gzip(self, path: str, etag: str) -> bytes:
        cached = self._gzipped.get(path)
        if cached is None or cached[0] != etag:
            with open(path, "rb") as f:
                cached = self._gzipped[path] = (etag, gzip.compress(f.read(), 6, mtime=0))
        return cached[1]


def not_modified(request: Request, etag: str, mtime: float) -> bool:
    """RFC 9110's order: If-None-Match decides when present (weak comparison), else If-Modified-Since."""
    if match := request.headers.get("if-none-match"):
        return match.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in match.split(",")]
    if since := request.headers.get("if-modified-since"):
        try:
            return int(mtime) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False
