"""One uploaded photo, from the request body to the answer: the ``photo`` field of a multipart form,
parsed as the body streams in (only that field's bytes are kept, in memory; nothing is written to disk),
checked by content, decoded with a pixel limit, predicted, and compared with the GPS position in its
EXIF, which is read apart and never reaches the network."""

from __future__ import annotations

import io
from http import HTTPStatus

from python_multipart.multipart import MultipartParser, parse_options_header

from deeploc.earth import geo, geography
from deeploc.learn.predict import predict_bytes, Predictor
from deeploc.sources import images

SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


class Refused(Exception):
    """An answer other than 200, with a message for the person who sent the photo."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def too_large(limit: int) -> Refused:
    return Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the photo is over {limit >> 20} MB")


class PhotoField:
    """Feed it the body's chunks; ``photo()`` is then the bytes of the form's ``photo`` field."""

    def __init__(self, content_type: str, limit: int):
        kind, params = parse_options_header(content_type or "")
        if kind != b"multipart/form-data" or not params.get(b"boundary"):
            raise Refused(HTTPStatus.BAD_REQUEST, "send the photo as multipart/form-data, in a field named 'photo'")
        self.limit, self.data, self.found, self.ended = limit, bytearray(), False, False
        self._name, self._value, self._in_photo, self._disposition = b"", b"", False, b""
        self.parser = MultipartParser(params[b"boundary"], callbacks={
            "on_header_field": lambda d, s, e: self._add("_name", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data, "on_part_end": self._part_end, "on_end": self._end})

    def _add(self, attr: str, chunk: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + chunk)

    def _header_end(self) -> None:
        if self._name.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._name, self._value = b"", b""

    def _headers_finished(self) -> None:
        self._in_photo = parse_options_header(self._disposition)[1].get(b"name") == b"photo" and not self.found
        self._disposition = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_photo:
            if len(self.data) + end - start > self.limit:
                raise too_large(self.limit)
            self.data += data[start:end]

    def _part_end(self) -> None:
        self.found = self.found or self._in_photo
        self._in_photo = False

    def _end(self) -> None:
        self.ended = True

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except Refused:
            raise
        except Exception as exc:  # python-multipart's parse errors: the form is malformed
            raise Refused(HTTPStatus.BAD_REQUEST, f"the form is malformed ({type(exc).__name__})") from None

    def photo(self) -> bytes:
        if not self.ended:
            raise Refused(HTTPStatus.BAD_REQUEST, "the form ended before its closing boundary")
        if not self.found:
            raise Refused(HTTPStatus.BAD_REQUEST, "no field named 'photo' in the form")
        return bytes(self.data)


def check(data: bytes) -> str:
    """The upload's type by its content, or a refusal saying why."""
    if not data:
        raise Refused(HTTPStatus.BAD_REQUEST, "the photo is empty")
    kind = next((t for sig, t in SIGNATURES.items() if data.startswith(sig)), None)
    if kind is None:
        raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "that is not a JPEG or PNG image (whatever its name says)")
    return kind


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


def answer(predictor: Predictor, data: bytes, max_pixels: int, k: int = 5) -> dict:
    """The prediction per output (with the country of each predicted place), and the EXIF truth with its
    country and the distances, when the photo carries GPS."""
    check(data)
    try:
        prediction = predict_bytes(predictor, data, k, max_pixels=max_pixels)
    except images.Unreadable as exc:
        if exc.reason == "too_many_pixels":
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f"the photo has more than {max_pixels // 1_000_000} megapixels") from None
        raise Refused(HTTPStatus.UNPROCESSABLE_ENTITY, "the photo could not be decoded (damaged or truncated?)") from None
    gps = exif_gps(data)
    geography.annotate([*prediction.values(), *([gps] if gps else [])])
    out = {"prediction": prediction, "exif_gps": gps}
    if gps:
        out["distances_km"] = {o: float(geo.haversine_km(gps["lat"], gps["lon"], v["lat"], v["lon"]))
                               for o, v in prediction.items()}
    return out
