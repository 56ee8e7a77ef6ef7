"""Reading images, shared by faces, training and inference: bytes in, RGB uint8 array out.

EXIF orientation is applied; grayscale, CMYK, palette and PNG content behind a .jpg name become RGB;
decompression bombs are refused before decoding; anything that does not decode raises ``Unreadable``
with a reason, which the stages turn into a reject instead of a crashed task.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

# ~ 50 megapixels: larger than any camera photo on Flickr at the time, far below what would exhaust memory.
MAX_PIXELS = 50_000_000


class Unreadable(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def decode(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int | None = None) -> np.ndarray:
    """Decode to RGB. With ``min_side``, a JPEG is decoded at the smallest scale (1/2, 1/4, 1/8) that keeps
    both sides at least ``min_side`` (libjpeg's DCT scaling: a large photo headed for a 336 px square is
    decoded several times faster); every reader that feeds the network passes the same ``min_side``."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > max_pixels:
                raise Unreadable("too_many_pixels", f"{img.width}x{img.height} exceeds {max_pixels} pixels")
            if min_side and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            img.load()  # raises on truncated or corrupt data
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                canvas = Image.new("RGB", img.size, (255, 255, 255))
                canvas.paste(img, mask=img.getchannel("A"))
                img = canvas
            return np.asarray(img.convert("RGB"))
    except Unreadable:
        raise
    except Exception as exc:  # PIL raises many types for bad data; all mean the same to the pipeline
        raise Unreadable("undecodable", f"{type(exc).__name__}: {exc}"[:300]) from None


def read_each(bucket, keys, prepare, threads: int = 1, min_side: int | None = None) -> tuple[list, list, list]:
    """Read, decode and ``prepare`` (array -> anything) every key; returns (results, reasons, details)
    in key order: a result where the image was read, a reject reason and detail where it was not.
    With ``threads`` > 1, reads and decodes overlap (Pillow and zlib release the GIL)."""
    def one(key):
        try:
            return prepare(read_rgb(bucket, key, min_side=min_side)), None, None
        except Unreadable as exc:
            return None, exc.reason, exc.detail

    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(one, keys))
    else:
        done = [one(k) for k in keys]
    return [d[0] for d in done], [d[1] for d in done], [d[2] for d in done]


def read_rgb(bucket, key: str, max_pixels: int = MAX_PIXELS, min_side: int | None = None) -> np.ndarray:
    """Read an object from a ``Bucket`` and decode it. Every way of failing, including an object
    that vanished or cannot be read, is an ``Unreadable`` with a reason the stages can reject by."""
    try:
        data = bucket.read(key)
    except OSError as exc:  # deeploc.bucket.ObjectMissing is a FileNotFoundError
        raise Unreadable("unreadable_object", f"{type(exc).__name__}: {exc}"[:300]) from None
    return decode(data, max_pixels, min_side)


# The report's transforms: images are resized so their shorter side is 1.5x the network's input, then
# cropped to the input size: anywhere for training, in the centre for validation and prediction.
EVAL_SCALE = 1.5


def centre_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return rgb[top:top + side, left:left + side]


def resize_square(rgb: np.ndarray, side: int) -> np.ndarray:
    """Resize so the shorter side is ``side``, then take the centre ``side`` x ``side`` square."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = side / min(h, w)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    return centre_crop(np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR)), side)


def model_input(rgb: np.ndarray, side: int) -> np.ndarray:
    """The evaluation transform: resize to 1.5x ``side`` (centre square), then the centre ``side`` crop."""
    return centre_crop(resize_square(rgb, eval_side(side)), side)


def eval_side(side: int) -> int:
    """The side of the square every transform starts from: 1.5x the network's input."""
    return int(round(side * EVAL_SCALE))
