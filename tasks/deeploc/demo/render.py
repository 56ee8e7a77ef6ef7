"""Synthetic photos whose look depends smoothly on where they were "taken".

The cues are deliberately learnable but noisy: sky colour follows latitude (warm near the equator,
pale towards the poles), ground hue follows longitude around the colour wheel (so it is continuous
across the antimeridian), the horizon height and the ground texture's stripe angle and period follow
both. Random buildings, brightness and pixel noise keep a classifier from reading them off one pixel.
"""

from __future__ import annotations

import colorsys
import functools

import numpy as np
from PIL import Image

SIZE = 128


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def render_scene(lat: float, lon: float, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """An RGB uint8 image of ``size`` x ``size`` carrying location cues for (lat, lon)."""
    a = abs(lat) / 90.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.empty((size, size, 3), dtype=np.float32)

    horizon = int(size * (0.25 + 0.35 * a + rng.normal(0, 0.03)))
    horizon = int(np.clip(horizon, size * 0.15, size * 0.8))
    sky_top = _hsv(0.08 + 0.5 * a, 0.55 - 0.3 * a, 0.95)
    sky_low = _hsv(0.12 + 0.45 * a, 0.25, 1.0)
    t = (yy[:horizon] / max(horizon, 1))[..., None]
    img[:horizon] = sky_top * (1 - t) + sky_low * t

    ground = _hsv((lon + 180.0) / 360.0, 0.65, 0.35 + 0.3 * (1 - a))
    angle = np.radians(lon) + rng.normal(0, 0.08)
    period = 5.0 + 12.0 * a
    stripes = np.sin((xx[horizon:] * np.cos(angle) + yy[horizon:] * np.sin(angle)) * 2 * np.pi / period)
    img[horizon:] = ground * (1.0 + 0.25 * stripes[..., None])

    for _ in range(rng.integers(0, 4)):  # buildings: distractors with no location signal
        w, h = rng.integers(8, 30), rng.integers(10, 60)
        x0 = rng.integers(0, size - w)
        y1 = min(size, horizon + rng.integers(0, 10))
        img[max(0, y1 - h):y1, x0:x0 + w] = rng.uniform(40, 220, 3)

    img *= rng.uniform(0.8, 1.2)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# A real frontal face: the astronaut photograph (public domain, NASA) that scikit-image ships. The
# crop holds her face, whose box in the photograph is x 177, y 66, 95 x 95 px, with a margin around it.
CROP = (40, 190, 150, 300)          # rows, columns of the photograph
FACE_IN_CROP = 95 / 150             # the face box's side as a share of the crop's side


@functools.lru_cache(maxsize=1)
def _face_crop() -> np.ndarray:
    from skimage import data

    top, bottom, left, right = CROP
    return data.astronaut()[top:bottom, left:right]


def paste_face(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Paste the face crop, scaled to 45-65% of the image side, somewhere fully inside the image;
    return the image and the planted face ratio (the face box's area / the image's area)."""
    size = img.shape[0]
    side = int(size * rng.uniform(0.45, 0.65))
    face = np.asarray(Image.fromarray(_face_crop()).resize((side, side), Image.BILINEAR))
    x, y = rng.integers(0, size - side + 1, 2)
    out = img.copy()
    out[y:y + side, x:x + side] = face
    return out, (side * FACE_IN_CROP) ** 2 / (img.shape[0] * img.shape[1])

