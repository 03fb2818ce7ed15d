"""vavl.media.actor without Ray: no-face frames interpolated, each bad input's reason, settings
that cannot work named before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

pytest.importorskip("av", reason="needs the media extra (av)")
pytest.importorskip("cv2", reason="needs the media extra (opencv-python-headless)")

from vavl.media.actor import Featurizer, FeaturizeSpec, fill_missing
from vavl.media.samples import write_video, write_wav
from vavl.store import schema as S

FPS = 10.0  # visual frames/s in these tests: 10 crops per second of video
CROP = 32


def test_frames_without_a_face_are_interpolated_between_their_neighbours() -> None:
    found = np.array([False, True, False, False, True, False])
    embedded = np.array([[0.0, 10.0], [3.0, 40.0]])  # frames 1 and 4
    out = fill_missing(embedded, found)
    assert out.shape == (6, 2)
    np.testing.assert_allclose(out[:, 0], [0.0, 0.0, 1.0, 2.0, 3.0, 3.0])
    np.testing.assert_allclose(out[:, 1], [10.0, 10.0, 20.0, 30.0, 40.0, 40.0])
    np.testing.assert_allclose(fill_missing(embedded[:1], np.array([True])), embedded[:1])


@pytest.fixture(scope="module")
def featurizer(effnet_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Featurizer:
    spec = FeaturizeSpec(
        audio_extractor="logmel",
        visual_extractor="effnet-b2",
        visual_model=str(effnet_weights),
        visual_fps=FPS,
        face_size=CROP,
    )
    local = pafs.LocalFileSystem()
    out = tmp_path_factory.mktemp("npy")
    return Featurizer(spec=spec, media_fs=local, npy_fs=local, npy_root=str(out))


def test_an_utterance_is_written_as_npy_at_the_stated_rates(
    featurizer: Featurizer, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "u1.mp4", 1.0, 25, face_every=3)
    result = featurizer.utterance(dict(id="u1", audio_path=str(video), video_path=str(video)))
    assert result["reason"] is None
    visual = np.load(Path(featurizer.npy_root) / "visual" / "u1.npy")
    audio = np.load(Path(featurizer.npy_root) / "audio" / "u1.npy")
    assert visual.shape == (FPS, 1408) and result["visual_frames"] == FPS
    assert 0 < result["face_frames"] < FPS  # a face in one frame of three at 25 frames/s
    assert abs(len(audio) - 100) <= 5 and audio.shape[1] == 80  # log-mel: 100 frames/s
    assert np.isfinite(visual).all() and np.isfinite(audio).all()


def test_each_bad_input_gets_its_reason_and_writes_nothing(
    featurizer: Featurizer, tmp_path: Path
) -> None:
    blank = write_video(tmp_path / "blank.mp4", 0.5, 25, face=False)
    mute = write_video(tmp_path / "mute.mp4", 0.5, 25, audio_rate=None)
    empty = write_wav(tmp_path / "empty.wav", 0.0, 16000)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    cases = {
        "blank": (str(blank), str(blank), S.NO_FACE),
        "mute": (str(mute), str(mute), S.NO_AUDIO_TRACK),
        "empty": (str(empty), None, S.EMPTY_AUDIO),
        "corrupt": (str(corrupt), str(corrupt), S.UNREADABLE_MEDIA),
    }
    for uid, (audio, video, reason) in cases.items():
        result = featurizer.utterance(dict(id=uid, audio_path=audio, video_path=video))
        assert result["reason"] == reason, (uid, result)
        assert result["file"].endswith(Path(audio).name if reason != S.NO_FACE else "blank.mp4")
        for modality in ("audio", "visual"):
            assert not (Path(featurizer.npy_root) / modality / f"{uid}.npy").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(), "no extractor"),
        (dict(audio_extractor="mfcc"), "--audio-extractor 'mfcc' is not one of"),
        (dict(audio_extractor="wavlm"), "needs --audio-model PATH"),
        (dict(visual_extractor="effnet-b2"), "needs --visual-model PATH"),
        (dict(audio_extractor="logmel", visual_fps=0.0), "visual_fps must be positive"),
        (dict(audio_extractor="logmel", n_mels=0), "n_mels must be at least 1"),
    ],
)
def test_settings_that_cannot_work_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeaturizeSpec(**settings).check()
