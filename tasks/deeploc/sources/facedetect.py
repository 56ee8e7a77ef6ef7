"""Face ratio with OpenCV's frontal-face Haar cascade (the report's person-removal measure).

One module so that the faces stage and the demo generator's self-check use the same parameters.
"""

from __future__ import annotations

import functools

import numpy as np

# Detection runs on the grayscale image downscaled so its longer side is at most this many pixels:
# faces that matter for removal (>= 3.5% of the image) stay far above the cascade's 24 px window,
# and the cost no longer grows with the camera's resolution.
MAX_SIDE = 512
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
CASCADE_FILE = "haarcascade_frontalface_default.xml"


@functools.lru_cache(maxsize=1)
def cascade():
    """The cascade, loaded once per process (Spark reuses Python workers, so once per worker)."""
    import cv2

    # Spark runs one task per core; OpenCV's own thread pool on top would oversubscribe the cores.
    cv2.setNumThreads(1)
    clf = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE_FILE)
    if clf.empty():
        raise RuntimeError(f"OpenCV could not load {CASCADE_FILE}; is opencv-python-headless < 5 installed?")
    return clf


def face_ratio(rgb: np.ndarray) -> tuple[float, int]:
    """Return (area covered by the union of face boxes / image area, number of faces)."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = min(1.0, MAX_SIDE / max(h, w))
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    boxes = cascade().detectMultiScale(gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS)
    if len(boxes) == 0:
        return 0.0, 0
    # Union, not sum: overlapping detections of one face must not count twice.
    mask = np.zeros(gray.shape, dtype=bool)
    for x, y, bw, bh in boxes:
        mask[y:y + bh, x:x + bw] = True
    return float(mask.mean()), int(len(boxes))
