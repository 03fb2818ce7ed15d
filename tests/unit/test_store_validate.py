"""Feature-file validation: one test per bad-input class, each landing on its reason code."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from vavl.store import schema as S
from vavl.store import validate as V

AUDIO_DIM, VISUAL_DIM = 16, 12


def label_row(tmp_path: Path, uid: str) -> dict[str, Any]:
    return dict(
        id=uid,
        row=2,
        speaker="s1",
        gender="Male",
        split="train",
        label=0,
        soft_label=[1.0, 0, 0, 0, 0, 0],
        attributes=None,
        audio_path=str(tmp_path / "audio" / f"{uid}.npy"),
        visual_path=str(tmp_path / "visual" / f"{uid}.npy"),
    )


def spec(frame_dtype: str = "float16") -> dict[str, Any]:
    fs = pafs.LocalFileSystem()
    return dict(
        audio_fs=fs,
        visual_fs=fs,
        audio_dim=AUDIO_DIM,
        visual_dim=VISUAL_DIM,
        frame_dtype=frame_dtype,
    )


def write(tmp_path: Path, modality: str, uid: str, array: np.ndarray) -> None:
    (tmp_path / modality).mkdir(exist_ok=True)
    np.save(tmp_path / modality / f"{uid}.npy", array)


def test_valid_utterance_is_packed_as_frame_bytes(tmp_path: Path) -> None:
    audio = np.random.default_rng(0).normal(size=(5, AUDIO_DIM)).astype(np.float32)
    write(tmp_path, "audio", "u", audio)
    out = V.check_row(label_row(tmp_path, "u"), spec("float32"))
    assert out["reject_reason"] is None
    assert out["audio_frames"] == 5 and out["visual"] is None and out["visual_frames"] == 0
    back = np.frombuffer(out["audio"], np.float32).reshape(5, AUDIO_DIM)
    np.testing.assert_array_equal(back, audio)


BAD_INPUTS = {
    "non_finite": (np.array([[0.0] * AUDIO_DIM, [np.inf] + [0.0] * 15], np.float32), S.NON_FINITE),
    "float16_overflow": (np.full((2, AUDIO_DIM), 1e6, np.float32), S.NON_FINITE),
    "wrong_rank": (np.zeros((3, AUDIO_DIM, 1), np.float32), S.WRONG_RANK),
    "wrong_dim": (np.zeros((3, AUDIO_DIM + 1), np.float32), S.WRONG_DIM),
    "zero_frames": (np.zeros((0, AUDIO_DIM), np.float32), S.ZERO_FRAMES),
    "bad_dtype": (np.array([["a"] * AUDIO_DIM]), S.BAD_DTYPE),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_feature_file_is_rejected_with_its_reason(tmp_path: Path, case: str) -> None:
    array, reason = BAD_INPUTS[case]
    write(tmp_path, "audio", "u", array)
    write(tmp_path, "visual", "u", np.zeros((4, VISUAL_DIM), np.float32))  # a good other half
    out = V.check_row(label_row(tmp_path, "u"), spec())
    assert out["reject_reason"] == reason
    assert out["reject_file"] == str(tmp_path / "audio" / "u.npy")
    assert out["audio"] is None and out["visual"] is None  # the whole utterance goes


def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "visual").mkdir()
    (tmp_path / "visual" / "u.npy").write_bytes(b"not an npy file")
    out = V.check_row(label_row(tmp_path, "u"), spec())
    assert out["reject_reason"] == S.UNREADABLE
    assert "visual/u.npy" in out["reject_file"]


def test_no_feature_file_in_either_modality_is_rejected(tmp_path: Path) -> None:
    out = V.check_row(label_row(tmp_path, "u"), spec())
    assert out["reject_reason"] == S.NO_FEATURES


def test_check_batch_returns_the_check_schema(tmp_path: Path) -> None:
    write(tmp_path, "visual", "v", np.ones((3, VISUAL_DIM), np.float32))
    rows = [label_row(tmp_path, "v"), label_row(tmp_path, "w")]
    table = V.check_batch(pa.Table.from_pylist(rows, schema=S.LABEL_ROW_SCHEMA), **spec())
    assert table.schema == S.CHECK_SCHEMA
    assert table["reject_reason"].to_pylist() == [None, S.NO_FEATURES]
    assert table["visual_frames"].to_pylist() == [3, 0]


def test_feature_sizes_come_from_the_headers_of_frame_like_files(tmp_path: Path) -> None:
    write(tmp_path, "audio", "a", np.zeros((0, 7), np.float32))  # zero frames: no size
    write(tmp_path, "audio", "b", np.zeros((2, 9), np.float32))
    write(tmp_path, "audio", "c", np.zeros((2, 11), np.float16))
    write(tmp_path, "audio", "d", np.zeros((2, 3, 1), np.float32))  # rank 3: no size
    (tmp_path / "audio" / "e.npy").write_bytes(b"\x93NUMPY garbage")
    rows = [label_row(tmp_path, u) for u in "xabcde"]
    table = pa.Table.from_pylist(rows, schema=S.LABEL_ROW_SCHEMA)
    sizes = V.feature_sizes(table, filesystems={"audio": pafs.LocalFileSystem()})
    assert sizes.to_pylist() == [dict(modality="audio", dim=9), dict(modality="audio", dim=11)]


def test_the_common_dim_is_the_one_most_files_have() -> None:
    assert V.common_dim(Counter({19: 1, 16: 39}), "audio") == 16
    assert V.common_dim(Counter(), "audio") is None
    with pytest.raises(S.StoreError, match=r"visual: feature sizes \[12, 14\] are equally"):
        V.common_dim(Counter({12: 2, 14: 2}), "visual")
