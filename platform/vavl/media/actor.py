"""The per-utterance work of the featurize job: a Ray Data actor that loads its extractors once
and turns label rows with media paths into `<npy>/audio/<id>.npy` and `<npy>/visual/<id>.npy`.

A batch in (PLAN_SCHEMA): id, audio_path (a .wav, or the video whose track is the audio; null
when audio is not asked for), video_path (null when there is none or video is not asked for).
A batch out (RESULT_SCHEMA): per id the frames written per modality, or the reject reason.
An utterance's files are written only once all its modalities succeeded.

Frames with no face: each gets the linear interpolation of the embeddings of the nearest frames
before and after it that have one (the nearest one at either end of the clip), so the visual
sequence keeps the stated frame rate; how many frames had a face is counted per utterance and
recorded in the manifest. A video in which no frame has a face is rejected (no_face).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from vavl import storage
from vavl.media import audio as A
from vavl.media import faces as F
from vavl.media import video as V
from vavl.media.extractors import (
    AUDIO_EXTRACTORS,
    EGEMAPS,
    LOGMEL,
    SSL_SAMPLE_RATE,
    VISUAL_EXTRACTORS,
    AudioExtractor,
    EffNetExtractor,
    EGeMAPSExtractor,
    LogMelExtractor,
    SSLExtractor,
)
from vavl.store import schema as S
from vavl.store.validate import Rejected

PLAN_SCHEMA = pa.schema(
    [("id", pa.string()), ("audio_path", pa.string()), ("video_path", pa.string())]
)
RESULT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("audio_frames", pa.int64()),
        ("visual_frames", pa.int64()),
        ("face_frames", pa.int64()),  # visual frames in which a face was found
        ("reason", pa.string()),
        ("file", pa.string()),
        ("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class FeaturizeSpec:
    """What the featurize job extracts, and how; every actor builds its extractors from it."""

    audio_extractor: str | None = None  # one of AUDIO_EXTRACTORS, None: no audio
    audio_model: str | None = None  # local transformers folder (wav2vec2 / hubert / wavlm)
    audio_layer: int | None = None  # hidden layer; None: the model's last
    chunk_seconds: float = 20.0  # longest audio stretch one forward pass sees
    n_mels: int = 80
    mel_win_ms: float = 25.0
    mel_hop_ms: float = 10.0
    visual_extractor: str | None = None  # one of VISUAL_EXTRACTORS, None: no video
    visual_model: str | None = None  # local EfficientNet-B2 state dict file
    visual_fps: float = 30.0  # frames/s taken from every video
    face_detector: str = F.DEFAULT_DETECTOR  # a bundled cascade name or a cascade XML path
    face_size: int = 288  # crop side in pixels (torchvision's B2 weights were evaluated at 288)
    face_margin: float = 0.2  # the face box widened by this fraction of its size on each side
    frames_per_forward: int = 32  # face crops per EfficientNet forward pass
    device: str = "cpu"

    def check(self) -> None:
        """ValueError naming the field when a setting cannot work (before any work starts)."""
        if self.audio_extractor is None and self.visual_extractor is None:
            raise ValueError("no extractor: give --audio-extractor, --visual-extractor or both")
        if self.audio_extractor not in (None, *AUDIO_EXTRACTORS):
            raise ValueError(
                f"--audio-extractor {self.audio_extractor!r} is not one of {AUDIO_EXTRACTORS}"
            )
        if self.visual_extractor not in (None, *VISUAL_EXTRACTORS):
            raise ValueError(
                f"--visual-extractor {self.visual_extractor!r} is not one of {VISUAL_EXTRACTORS}"
            )
        needs_model = self.audio_extractor not in (None, LOGMEL, EGEMAPS)
        if needs_model and not self.audio_model:
            raise ValueError(f"--audio-extractor {self.audio_extractor} needs --audio-model PATH")
        if self.visual_extractor and not self.visual_model:
            raise ValueError(
                f"--visual-extractor {self.visual_extractor} needs --visual-model PATH"
            )
        for name in ("chunk_seconds", "mel_win_ms", "mel_hop_ms", "visual_fps", "face_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("n_mels", "frames_per_forward"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.face_margin < 0:
            raise ValueError(f"face_margin must be >= 0, got {self.face_margin!r}")


def build_audio(spec: FeaturizeSpec) -> AudioExtractor | None:
    if spec.audio_extractor is None:
        return None
    if spec.audio_extractor == EGEMAPS:
        return EGeMAPSExtractor(sample_rate=SSL_SAMPLE_RATE)
    if spec.audio_extractor == LOGMEL:
        return LogMelExtractor(
            n_mels=spec.n_mels,
            sample_rate=SSL_SAMPLE_RATE,
            win_ms=spec.mel_win_ms,
            hop_ms=spec.mel_hop_ms,
        )
    return SSLExtractor(
        name=spec.audio_extractor,
        model=str(spec.audio_model),
        layer=spec.audio_layer,
        chunk_seconds=spec.chunk_seconds,
        device=spec.device,
    )


def build_visual(spec: FeaturizeSpec) -> tuple[EffNetExtractor, F.CascadeDetector] | None:
    if spec.visual_extractor is None:
        return None
    extractor = EffNetExtractor(
        weights=str(spec.visual_model), image_size=spec.face_size, device=spec.device
    )
    return extractor, F.CascadeDetector(spec.face_detector)


def fill_missing(embedded: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(F, D) embeddings of the frames where `found` (T,) is True -> (T, D): every other frame
    linearly interpolated between its nearest found neighbours (the nearest one at the ends)."""
    where = np.flatnonzero(found)
    t = np.arange(len(found))
    hi = np.searchsorted(where, t).clip(max=len(where) - 1)  # first found frame at or after t
    lo = np.where(where[hi] <= t, hi, (hi - 1).clip(min=0))  # last found frame at or before t
    span = where[hi] - where[lo]
    weight = np.where(span > 0, (t - where[lo]) / np.maximum(span, 1), 0.0)[:, None]
    return (embedded[lo] * (1 - weight) + embedded[hi] * weight).astype(np.float32)


def open_media(fs: pafs.FileSystem, path: str) -> Any:
    """What PyAV opens: the path on local disk, the bytes in memory elsewhere (S3)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    return io.BytesIO(storage.read_bytes(fs, path))


def save_npy(fs: pafs.FileSystem, path: str, frames: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(frames, dtype=np.float32))
    storage.write_bytes(fs, path, buffer.getvalue())


class Featurizer:
    """Ray Data actor body (`map_batches(Featurizer, compute=ActorPoolStrategy(...))`): the
    models are loaded once, in `__init__`, on `spec.device`."""

    def __init__(
        self,
        *,
        spec: FeaturizeSpec,
        media_fs: pafs.FileSystem,
        npy_fs: pafs.FileSystem,
        npy_root: str,
    ) -> None:
        self.spec, self.media_fs, self.npy_fs, self.npy_root = spec, media_fs, npy_fs, npy_root
        self.audio = build_audio(spec)
        self.visual = build_visual(spec)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self.utterance(row) for row in batch.to_pylist()]
        return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)

    def utterance(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(id=row["id"], audio_frames=0, visual_frames=0, face_frames=0)
        out.update(reason=None, file=None, detail=None)
        frames: dict[str, np.ndarray] = {}
        try:
            if self.audio is not None and row["audio_path"]:
                frames["audio"] = self.audio_frames(self.audio, row["audio_path"])
            if self.visual is not None and row["video_path"]:
                frames["visual"], out["face_frames"] = self.visual_frames(
                    *self.visual, row["video_path"]
                )
        except Rejected as rej:
            out.update(reason=rej.reason, file=rej.file, detail=rej.detail)
            return out
        for modality, array in frames.items():
            save_npy(self.npy_fs, storage.join(self.npy_root, modality, f"{row['id']}.npy"), array)
            out[f"{modality}_frames"] = len(array)
        return out

    def audio_frames(self, extractor: AudioExtractor, path: str) -> np.ndarray:
        """(T_a, D_a) frames of the audio in `path`."""
        name = storage.redact(path)
        samples, _ = A.read_mono(open_media(self.media_fs, path), name, extractor.sample_rate)
        return extractor(samples, name)

    def visual_frames(
        self, extractor: EffNetExtractor, detector: F.CascadeDetector, path: str
    ) -> tuple[np.ndarray, int]:
        """(T_v, D_v) face embeddings of the video in `path`, and how many frames had a face."""
        name, spec = storage.redact(path), self.spec
        found: list[bool] = []
        embedded: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        for picture in V.frames_at(open_media(self.media_fs, path), name, spec.visual_fps):
            box = detector.largest_face(picture)
            found.append(box is not None)
            if box is not None:
                pending.append(F.crop(picture, box, margin=spec.face_margin, size=spec.face_size))
            if len(pending) == spec.frames_per_forward:
                embedded.append(extractor(np.stack(pending)))
                pending = []
        if pending:
            embedded.append(extractor(np.stack(pending)))
        if not found:
            raise Rejected(S.UNREADABLE_MEDIA, name, "no picture could be decoded")
        if not embedded:
            raise Rejected(S.NO_FACE, name, f"no face found in any of its {len(found)} frames")
        return fill_missing(np.concatenate(embedded), np.array(found)), int(sum(found))
