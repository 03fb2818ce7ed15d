"""Per-utterance feature loading, validation and packing: the body of the ingest's Ray Data tasks.

A feature file is `<dir>/<id>.npy` holding a (T, D) real array. It is rejected (never dropped
silently, never cast past recognition) when it cannot be read, is not 2-D, is not a real number
type, has zero frames, has a feature size other than the modality's dimension, or holds NaN/inf,
including values that overflow the store's frame dtype. The dimension of each modality is the one
given to the ingest or, by default, the one most of that modality's files have, read from the
.npy headers alone (`feature_sizes`, `common_dim`). An utterance with one valid modality and the
other file absent is accepted; one whose present file is bad is rejected as a whole.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from vavl import storage
from vavl.store import schema as S


class Rejected(Exception):
    """One utterance's reason for rejection: a reason code, the file and a detail."""

    def __init__(self, reason: str, file: str, detail: str) -> None:
        super().__init__(f"{reason}: {file}: {detail}")
        self.reason, self.file, self.detail = reason, file, detail


def load_npy(fs: pafs.FileSystem, path: str) -> np.ndarray | None:
    """The array in one .npy file; None when there is no such file."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            return np.load(path, allow_pickle=False)
        return np.load(io.BytesIO(storage.read_bytes(fs, path)), allow_pickle=False)
    except Exception as err:  # any failure to read is the file's fault here: report it
        raise Rejected(S.UNREADABLE, path, f"{type(err).__name__}: {err}") from None


def check_frames(array: np.ndarray, path: str, dim: int | None, frame_dtype: str) -> np.ndarray:
    """The frames as a C-order array of `frame_dtype`, or Rejected with the reason."""
    if array.ndim != 2:
        raise Rejected(S.WRONG_RANK, path, f"expected a (T, D) array, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise Rejected(S.BAD_DTYPE, path, f"expected a real number dtype, got {array.dtype}")
    if array.shape[0] == 0:
        raise Rejected(S.ZERO_FRAMES, path, f"no frames (shape {array.shape})")
    if dim is not None and array.shape[1] != dim:
        raise Rejected(S.WRONG_DIM, path, f"feature size {array.shape[1]}, expected {dim}")
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        value = array[tuple(bad)]
        raise Rejected(
            S.NON_FINITE,
            path,
            f"{int((~finite).sum())} non-finite value(s), first {value} "
            f"at frame {bad[0]}, dim {bad[1]}",
        )
    with np.errstate(over="ignore"):  # overflow is detected just below and reported
        packed = np.ascontiguousarray(array, dtype=frame_dtype)
    if frame_dtype != "float32" and not np.isfinite(packed).all():
        peak = float(np.abs(array).max())
        raise Rejected(S.NON_FINITE, path, f"values up to {peak:g} overflow {frame_dtype}")
    return packed


FEATURE_SIZE_SCHEMA = pa.schema([("modality", pa.string()), ("dim", pa.int64())])


def npy_header(fs: pafs.FileSystem, path: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from a .npy file's header (its first bytes only); None when there is
    no such file or it is not a readable .npy file."""
    try:
        with fs.open_input_file(path) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except Exception:  # missing, unreadable or not .npy: the full check reports it per file
        return None
    return tuple(int(n) for n in shape), dtype


def feature_size(fs: pafs.FileSystem, path: str | None) -> int | None:
    """The feature size D of a (T > 0, D) real array file, from its header; else None."""
    header = npy_header(fs, path) if path else None
    if header is None:
        return None
    shape, dtype = header
    if len(shape) != 2 or shape[0] == 0 or dtype.kind not in "fiu":
        return None
    return shape[1]


def feature_sizes(batch: pa.Table, *, filesystems: dict[str, pafs.FileSystem]) -> pa.Table:
    """Ray Data `map_batches` body: (modality, D) of every file in `batch` (LABEL_ROW_SCHEMA)
    that looks like frames, for the modalities in `filesystems`."""
    out = []
    for modality, fs in filesystems.items():
        for path in batch.column(f"{modality}_path").to_pylist():
            dim = feature_size(fs, path)
            if dim is not None:
                out.append(dict(modality=modality, dim=dim))
    return pa.Table.from_pylist(out, schema=FEATURE_SIZE_SCHEMA)


def common_dim(sizes: Counter[int], modality: str) -> int | None:
    """The feature size most files of `modality` have (None when there is no file); a tie is
    an error, since either choice would reject the other half as wrong_dim."""
    if not sizes:
        return None
    ranked = sizes.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        tied = [dim for dim, n in ranked if n == ranked[0][1]]
        raise S.StoreError(
            f"{modality}: feature sizes {tied} are equally common ({ranked[0][1]} files each); "
            f"pass the right one with --{modality}-dim ({modality}_dim=...)"
        )
    return ranked[0][0]


def _load_modality(
    fs: pafs.FileSystem, path: str | None, dim: int | None, frame_dtype: str
) -> np.ndarray | None:
    if not path:
        return None
    array = load_npy(fs, path)
    return None if array is None else check_frames(array, path, dim, frame_dtype)


def check_row(row: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """One label row -> one row of CHECK_SCHEMA (packed frames, or the reject reason)."""
    out = {name: row.get(name) for name in S.ROW_COLUMNS}
    out.update(audio=None, audio_frames=0, visual=None, visual_frames=0)
    out.update(reject_reason=None, reject_detail=None, reject_file=None, csv_row=row["row"])
    try:
        audio = _load_modality(
            spec["audio_fs"], row["audio_path"], spec["audio_dim"], spec["frame_dtype"]
        )
        visual = _load_modality(
            spec["visual_fs"], row["visual_path"], spec["visual_dim"], spec["frame_dtype"]
        )
        if audio is None and visual is None:
            raise Rejected(
                S.NO_FEATURES,
                f"{row['audio_path']} | {row['visual_path']}",
                "no feature file in either modality",
            )
    except Rejected as rej:
        out.update(reject_reason=rej.reason, reject_detail=rej.detail, reject_file=rej.file)
        return out
    if audio is not None:
        out.update(audio=audio.tobytes(), audio_frames=audio.shape[0])
    if visual is not None:
        out.update(visual=visual.tobytes(), visual_frames=visual.shape[0])
    return out


def check_batch(batch: pa.Table, **spec: Any) -> pa.Table:
    """Ray Data `map_batches` body: label rows (LABEL_ROW_SCHEMA) -> CHECK_SCHEMA rows.

    `spec` holds audio_fs/visual_fs (pyarrow filesystems), audio_dim/visual_dim and frame_dtype.
    """
    rows = [check_row(row, spec) for row in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=S.CHECK_SCHEMA)
