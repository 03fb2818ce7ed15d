"""Video in: decode with PyAV and resample to a stated frame rate.

Frame k of the output is the picture on screen at time k / fps (from the first picture's time):
the last decoded picture shown at or before it. A clip lasting d seconds (its last picture's
time plus one frame period of the file's own rate) gives floor(d * fps) frames: a 1 s clip
recorded at 25 frames/s gives 30 frames at fps=30 (some repeated) or 15 at fps=15 (some
skipped). Pictures are yielded one at a time so that a long video is never held whole.

Shapes: a picture is (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from vavl.store import schema as S
from vavl.store.validate import Rejected

TIME_TOLERANCE = 1e-6  # seconds: timestamps are rationals; float rounding must not add a frame


def _pictures(container: Any, stream: Any) -> Iterator[tuple[float, np.ndarray]]:
    for frame in container.decode(stream):
        if frame.time is not None:
            yield float(frame.time), frame.to_ndarray(format="rgb24")


def resample_times(
    pictures: Iterator[tuple[float, np.ndarray]], fps: float, period: float
) -> Iterator[np.ndarray]:
    """Pictures (time in s, picture) in presentation order -> the picture at each k / fps.
    `period` is one frame of the source (s): how long its last picture stays on screen."""
    k, start, shown, last = 0, None, None, 0.0
    for time, picture in pictures:
        start = time if start is None else start
        while shown is not None and k / fps < time - start - TIME_TOLERANCE:
            yield shown
            k += 1
        shown, last = picture, time - start
    end = last + period
    while shown is not None and k / fps < end - TIME_TOLERANCE:
        yield shown
        k += 1


def frames_at(source: Any, name: str, fps: float) -> Iterator[np.ndarray]:
    """The pictures of `source` (a path or binary file object) at `fps` frames/s. Rejected
    (unreadable_media) when the file cannot be opened or decoded or has no video track; a
    decoding error part-way through rejects the whole file too (a truncated video)."""
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise Rejected(S.UNREADABLE_MEDIA, name, "the file has no video track")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise Rejected(S.UNREADABLE_MEDIA, name, "the video track states no frame rate")
            period = float(1 / Fraction(rate))
            yield from resample_times(_pictures(container, stream), fps, period)
    except Rejected:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise Rejected(S.UNREADABLE_MEDIA, name, f"{type(err).__name__}: {err}") from None
