"""Face boxes and crops with OpenCV cascades.

The default detector is the frontal-face Haar cascade that OpenCV's wheel bundles (no weights to
fetch); any other cascade XML (a stronger or LBP one) can be given as a local path. Per picture
the largest box is kept: one speaker per utterance. A crop is that box widened by `margin`
(a fraction of its size on each side), clipped to the picture, and resized to `size` x `size`.

Shapes: pictures (H, W, 3) uint8 RGB; boxes (x, y, w, h) in pixels; crops (size, size, 3) uint8.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BUNDLED = {"haar": "haarcascade_frontalface_default.xml"}
DEFAULT_DETECTOR = "haar"
SCALE_FACTOR = 1.1  # the detector's image pyramid step
MIN_NEIGHBORS = 5  # overlapping detections a box needs (higher: fewer false faces)
MIN_FACE_FRACTION = 0.1  # smallest face searched for, as a fraction of the picture's short side

Box = tuple[int, int, int, int]


def cascade_path(detector: str) -> str:
    """The XML file of `detector`: a bundled name (`BUNDLED`) or a path to a cascade file."""
    if detector in BUNDLED:
        return str(Path(cv2.data.haarcascades) / BUNDLED[detector])
    if not Path(detector).is_file():
        raise FileNotFoundError(
            f"face detector {detector!r} is neither a bundled one ({', '.join(BUNDLED)}) "
            "nor a cascade XML file"
        )
    return detector


class CascadeDetector:
    """The largest face in a picture, or None."""

    def __init__(self, detector: str = DEFAULT_DETECTOR) -> None:
        self.path = cascade_path(detector)
        try:
            self._cascade = cv2.CascadeClassifier(self.path)
            loaded = not self._cascade.empty()
        except (cv2.error, SystemError):  # OpenCV raises one or the other on a bad file
            loaded = False
        if not loaded:
            raise ValueError(f"face detector {self.path} is not a cascade OpenCV can load")

    def largest_face(self, picture: np.ndarray) -> Box | None:
        gray = cv2.equalizeHist(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY))
        smallest = max(1, int(MIN_FACE_FRACTION * min(gray.shape)))
        boxes = self._cascade.detectMultiScale(
            gray,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBORS,
            minSize=(smallest, smallest),
        )
        if len(boxes) == 0:
            return None
        x, y, w, h = max(boxes, key=lambda b: int(b[2]) * int(b[3]))
        return int(x), int(y), int(w), int(h)


def crop(picture: np.ndarray, box: Box, *, margin: float, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3): `box` widened by `margin` per side, clipped, resized."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    top, bottom = max(0, y - dy), min(picture.shape[0], y + h + dy)
    left, right = max(0, x - dx), min(picture.shape[1], x + w + dx)
    return cv2.resize(picture[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)
