"""vavl.media.featurize before any Ray work: media found per label row, and the refusals (an
unusable extractor, an existing store, nothing usable) with exit status 2 and no store."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("av", reason="needs the media extra (av)")
pytest.importorskip("cv2", reason="needs the media extra (opencv-python-headless)")

from vavl.commands.featurize import main
from vavl.media.actor import FeaturizeSpec
from vavl.media.featurize import find_media
from vavl.media.samples import write_labels, write_video, write_wav
from vavl.store import schema as S


def test_each_label_row_gets_its_wav_else_its_video(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", 0.1, 8000)
    write_video(tmp_path / "a.mp4", 0.2, 10)
    (tmp_path / "b.FLV").write_bytes((tmp_path / "a.mp4").read_bytes())  # any case of extension
    write_wav(tmp_path / "c.wav", 0.1, 8000)
    both = FeaturizeSpec(audio_extractor="logmel", visual_extractor="effnet-b2")
    plan, missing = find_media(str(tmp_path), ["a", "b", "c", "d"], both)
    found = {p["id"]: (p["audio_path"], p["video_path"]) for p in plan}
    assert found == {
        "a": (str(tmp_path / "a.wav"), str(tmp_path / "a.mp4")),
        "b": (str(tmp_path / "b.FLV"), str(tmp_path / "b.FLV")),
        "c": (str(tmp_path / "c.wav"), None),
    }
    assert list(missing) == ["d"] and missing["d"][0] == S.MISSING_MEDIA
    video_only = FeaturizeSpec(visual_extractor="effnet-b2")
    plan, missing = find_media(str(tmp_path), ["a", "c"], video_only)
    assert [(p["id"], p["audio_path"]) for p in plan] == [("a", None)] and list(missing) == ["c"]


def run(tmp_path: Path, *extra: str) -> int:
    args = ["--labels", str(tmp_path / "labels.csv"), "--media", str(tmp_path / "media")]
    return main([*args, "--out", str(tmp_path / "store"), "--quiet", *extra])


def test_refusals_exit_2_and_leave_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "media").mkdir()
    write_labels(tmp_path / "labels.csv", ["x", "y", "z"], ["train", "dev", "test"])
    assert run(tmp_path, "--audio-extractor", "wav2vec2", "--audio-model", "/no/such") == 2
    assert "extractor setup: --audio-model /no/such: not a local transformers" in (
        capsys.readouterr().err
    )
    assert run(tmp_path, "--audio-extractor", "logmel") == 2  # no media at all
    err = capsys.readouterr().err
    assert "3 of the 3 label rows" in err and S.MISSING_MEDIA in err
    assert (tmp_path / "store" / S.FAILED_REJECTS_NAME).is_file()
    assert not (tmp_path / "store" / S.MANIFEST_NAME).exists()
    (tmp_path / "store" / "something").write_text("")
    assert run(tmp_path, "--audio-extractor", "logmel") == 2
    assert "--overwrite" in capsys.readouterr().err
