"""vavl.media.video and vavl.media.faces: frames at the stated rate, the drawn face found, blank
pictures without one, broken files rejected as unreadable_media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="needs the media extra (av)")
pytest.importorskip("cv2", reason="needs the media extra (opencv-python-headless)")

from vavl.media import faces as F
from vavl.media import video as V
from vavl.media.samples import face_picture, write_video
from vavl.store import schema as S
from vavl.store.validate import Rejected


def stamped(count: int, rate: float, start: float = 0.0):
    """`count` pictures at `rate` frames/s, each a 1x1 picture holding its own index."""
    return ((start + i / rate, np.full((1, 1, 3), i, np.uint8)) for i in range(count))


@pytest.mark.parametrize(
    ("source_fps", "fps", "expected"),
    [(25, 30, 30), (25, 15, 15), (30, 30, 30), (24, 10, 10)],
)
def test_one_second_gives_fps_frames_whatever_the_source_rate(
    source_fps: int, fps: float, expected: int
) -> None:
    out = list(V.resample_times(stamped(source_fps, source_fps, start=0.5), fps, 1 / source_fps))
    assert len(out) == expected
    shown = [int(p[0, 0, 0]) for p in out]
    # Frame k shows the last source picture at or before k / fps: never one from the future.
    assert shown == [int(np.floor(k / fps * source_fps + 1e-9)) for k in range(expected)]


def test_a_video_file_is_read_at_the_stated_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "face.mp4", 1.0, 25, audio_rate=None)
    frames = list(V.frames_at(str(path), path.name, 30.0))
    assert len(frames) == 30
    assert frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8


def test_broken_videos_are_rejected_as_unreadable(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mp4", 1.0, 25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST garbage" * 10)
    for path in (truncated, corrupt):
        with pytest.raises(Rejected) as rejected:
            list(V.frames_at(str(path), path.name, 30.0))
        assert (rejected.value.reason, rejected.value.file) == (S.UNREADABLE_MEDIA, path.name)


def test_the_bundled_cascade_finds_the_drawn_face_and_nothing_in_a_blank_picture() -> None:
    detector = F.CascadeDetector()
    box = detector.largest_face(face_picture())
    assert box is not None
    x, y, w, h = box
    assert x < 160 < x + w and y < 120 < y + h  # around the face's centre
    assert detector.largest_face(face_picture(face=False)) is None
    crop = F.crop(face_picture(), box, margin=0.2, size=32)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8


def test_another_cascade_is_taken_from_a_path_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    import cv2

    alt = str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml")
    assert F.CascadeDetector(alt).path == alt
    with pytest.raises(FileNotFoundError, match="nor a cascade XML file"):
        F.CascadeDetector(str(tmp_path / "none.xml"))
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match="not a cascade"):
        F.CascadeDetector(str(bad))
