"""Audio in: decode any container PyAV reads, mix to mono, resample, cut into chunks.

Shapes: a decoded track is (C, N) float32 in [-1, 1] (C channels, N samples); what the
extractors take is mono (N,) at their sample rate.
"""

from __future__ import annotations

import math
from typing import Any

import av
import numpy as np
from scipy.signal import resample_poly

from vavl.store import schema as S
from vavl.store.validate import Rejected


def decode_audio(source: Any, name: str) -> tuple[np.ndarray, int]:
    """The first audio track of `source` (a path or a binary file object) as ((C, N) float32,
    sample rate). Rejected with the reason: no audio track, unreadable, or no samples."""
    try:
        with av.open(source) as container:
            if not container.streams.audio:
                raise Rejected(S.NO_AUDIO_TRACK, name, "the file has no audio track")
            stream = container.streams.audio[0]
            # Planar float keeps each channel contiguous: (C, n) per decoded frame.
            resampler = av.AudioResampler(format="fltp")
            parts = []
            for frame in container.decode(stream):
                parts += [f.to_ndarray() for f in resampler.resample(frame)]
            parts += [f.to_ndarray() for f in resampler.resample(None)]
            rate = stream.rate
    except Rejected:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise Rejected(S.UNREADABLE_MEDIA, name, f"{type(err).__name__}: {err}") from None
    samples = np.concatenate(parts, axis=1) if parts else np.zeros((1, 0), np.float32)
    if samples.shape[1] == 0:
        raise Rejected(S.EMPTY_AUDIO, name, "the audio track holds no samples")
    if not rate:
        raise Rejected(S.UNREADABLE_MEDIA, name, "the audio track states no sample rate")
    return samples.astype(np.float32, copy=False), int(rate)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(C, N) -> (N,): the mean of the channels."""
    return samples.mean(axis=0)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(N,) at `rate` -> (ceil(N * target / rate),) at `target`, by polyphase filtering."""
    if rate == target:
        return samples
    common = math.gcd(rate, target)
    return resample_poly(samples, target // common, rate // common).astype(np.float32)


def read_mono(source: Any, name: str, target_rate: int) -> tuple[np.ndarray, int]:
    """(N,) float32 mono samples of `source` at `target_rate`, and the file's own rate."""
    samples, rate = decode_audio(source, name)
    return resample(to_mono(samples), rate, target_rate), rate


def chunk_spans(samples: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) spans of at most `chunk` samples covering `samples`."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 sample, got {chunk}")
    return [(start, min(start + chunk, samples)) for start in range(0, samples, chunk)]
