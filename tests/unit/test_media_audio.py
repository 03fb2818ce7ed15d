"""vavl.media.audio: any rate, mono or stereo, to mono 16 kHz; bad files rejected with reasons."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="needs the media extra (av)")

from vavl.media import audio as A
from vavl.media.samples import write_video, write_wav
from vavl.store import schema as S
from vavl.store.validate import Rejected

TARGET = 16000
SECONDS = 1.5


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_wavs_of_any_rate_and_layout_become_mono_at_the_target_rate(
    tmp_path: Path, rate: int, channels: int
) -> None:
    path = write_wav(tmp_path / "a.wav", SECONDS, rate, channels)
    decoded, found = A.decode_audio(str(path), path.name)
    assert found == rate
    assert decoded.shape == (channels, round(SECONDS * rate))
    mono, original = A.read_mono(str(path), path.name, TARGET)
    assert original == rate
    assert mono.shape == (math.ceil(round(SECONDS * rate) * TARGET / rate),)
    assert np.isfinite(mono).all()
    # The sweep's loudness survives mixing and resampling (amplitude 0.5: RMS ~0.35).
    assert np.sqrt(np.mean(mono**2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_stereo_is_the_mean_of_its_channels() -> None:
    samples = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 1.0]], np.float32)  # (C=2, N=3)
    assert A.to_mono(samples).tolist() == [0.5, 0.0, 0.0]


def test_chunk_spans_cover_the_samples() -> None:
    assert A.chunk_spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert A.chunk_spans(8, 4) == [(0, 4), (4, 8)]


def test_empty_corrupt_and_silent_videos_are_rejected_with_their_reason(tmp_path: Path) -> None:
    empty = write_wav(tmp_path / "empty.wav", 0.0, TARGET)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    mute = write_video(tmp_path / "mute.mp4", 0.2, 10, audio_rate=None)
    for path, reason in (
        (empty, S.EMPTY_AUDIO),
        (garbage, S.UNREADABLE_MEDIA),
        (mute, S.NO_AUDIO_TRACK),
        (tmp_path / "absent.wav", S.UNREADABLE_MEDIA),
    ):
        with pytest.raises(Rejected) as rejected:
            A.decode_audio(str(path), path.name)
        assert (rejected.value.reason, rejected.value.file) == (reason, path.name)
