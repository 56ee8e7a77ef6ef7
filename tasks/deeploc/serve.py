"""``deeploc serve``: the published site on 127.0.0.1, and ``POST /api/predict`` for your own photo.

The upload (multipart field ``photo``, a JPEG or PNG) is read into memory, never written to disk or the
lake, checked (size, type by content, pixel count) and decoded to pixels; only the pixels reach the
network (``predict.predict_bytes``). A GPS position in its EXIF is read apart and answered as the truth
to compare with. Every answer carries a Content-Security-Policy that allows nothing but this server
(and the configured tile host).
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import logging
import mimetypes
import os
import posixpath
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

from deeploc import commit, geo, images, runs
from deeploc.lake import Lake
from deeploc.predict import Predictor, predict_bytes

log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 20 << 20
MAX_UPLOAD_PIXELS = 40_000_000
SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


class Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def content_security_policy(tiles: str | None) -> str:
    img = "'self' data:" + (f" {urlparse(tiles).scheme}://{urlparse(tiles).netloc.replace('{s}', '*')}" if tiles else "")
    return ("default-src 'none'; script-src 'self'; style-src 'self'; " + f"img-src {img}; connect-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def photo_from_multipart(content_type: str, body: bytes) -> bytes:
    """The bytes of the ``photo`` field of a multipart/form-data body."""
    if not content_type.startswith("multipart/form-data"):
        raise Refused(HTTPStatus.BAD_REQUEST, "send the photo as multipart/form-data, in a field named 'photo'")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "photo":
            return part.get_payload(decode=True) or b""
    raise Refused(HTTPStatus.BAD_REQUEST, "no field named 'photo' in the form")


def exif_gps(data: bytes) -> dict | None:
    """The GPS position in a photo's EXIF, or None. Read apart from the pixels; never given to the network."""
    from PIL import Image

    try:
        gps = Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
        if not gps or 2 not in gps or 4 not in gps:
            return None
        deg = lambda v: float(v[0]) + float(v[1]) / 60 + float(v[2]) / 3600  # noqa: E731
        lat, lon = deg(gps[2]) * (-1 if gps.get(1) == "S" else 1), deg(gps[4]) * (-1 if gps.get(3) == "W" else 1)
        return {"lat": lat, "lon": lon} if -90 <= lat <= 90 and -180 <= lon <= 180 else None
    except Exception:  # noqa: BLE001 - malformed EXIF: no truth to show, the photo is still predicted
        return None


def check(data: bytes) -> str:
    """The upload's type by its content, or a refusal saying why."""
    if not data:
        raise Refused(HTTPStatus.BAD_REQUEST, "the photo is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the photo is over {MAX_UPLOAD_BYTES >> 20} MB")
    kind = next((t for sig, t in SIGNATURES.items() if data.startswith(sig)), None)
    if kind is None:
        raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "that is not a JPEG or PNG image (whatever its name says)")
    return kind


def answer(predictor: Predictor, data: bytes, k: int = 5) -> dict:
    check(data)
    try:
        prediction = predict_bytes(predictor, data, k, max_pixels=MAX_UPLOAD_PIXELS)
    except images.Unreadable as exc:
        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if exc.reason == "too_many_pixels" else HTTPStatus.UNPROCESSABLE_ENTITY
        message = (f"the photo has more than {MAX_UPLOAD_PIXELS // 1_000_000} megapixels" if exc.reason == "too_many_pixels"
                   else "the photo could not be decoded (damaged or truncated?)")
        raise Refused(status, message) from None
    gps = exif_gps(data)
    out = {"prediction": prediction, "exif_gps": gps}
    if gps:
        out["distances_km"] = {o: float(geo.haversine_km(gps["lat"], gps["lon"], v["lat"], v["lon"]))
                               for o, v in prediction.items()}
    return out


def handler(site: str, predictor: Predictor, csp: str):
    class Handler(BaseHTTPRequestHandler):
        server_version = "deeploc"

        def _send(self, status, body: bytes, ctype: str):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status, obj):
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 - the http.server convention
            rel = posixpath.normpath(unquote(urlparse(self.path).path)).lstrip("/") or "index.html"
            path = os.path.join(site, rel)
            if rel.startswith("..") or not os.path.isfile(path):
                return self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            with open(path, "rb") as f:
                self._send(HTTPStatus.OK, f.read(), mimetypes.guess_type(path)[0] or "application/octet-stream")

        def do_POST(self):  # noqa: N802
            if urlparse(self.path).path != "/api/predict":
                return self._json(HTTPStatus.NOT_FOUND, {"error": "POST /api/predict with a photo"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_UPLOAD_BYTES + 64 * 1024:  # refused before the body is read
                    raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the photo is over {MAX_UPLOAD_BYTES >> 20} MB")
                data = photo_from_multipart(self.headers.get("Content-Type", ""), self.rfile.read(length))
                self._json(HTTPStatus.OK, answer(predictor, data))
            except Refused as exc:
                self.close_connection = True
                self._json(exc.status, {"error": exc.message})
            except Exception:  # noqa: BLE001 - an answer, never a stack trace
                log.exception("predict failed")
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the prediction failed; see the server's log"})

        def log_message(self, fmt, *args):
            log.info("%s %s", self.address_string(), fmt % args)

    return Handler


def make_server(lake: str, run: str | None = None, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """The site of ``site/`` and uploads predicted by ``run`` (default: the run the site shows)."""
    lake_ = Lake(lake)
    site = lake_.download(commit.require(lake_, "site", "deeploc publish"))
    with open(os.path.join(site, "site.json")) as f:
        published = json.load(f)
    run = run or published["run"] or runs.resolve(lake_, None)
    predictor = Predictor(lake_.download(commit.require(lake_, f"models/{run}", "train")))
    return ThreadingHTTPServer((host, port), handler(site, predictor, content_security_policy(published["tiles"])))


def serve(lake: str, run: str | None = None, host: str = "127.0.0.1", port: int = 8000):
    server = make_server(lake, run, host, port)
    print(f"deeploc: the web map on http://{host}:{server.server_address[1]}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
