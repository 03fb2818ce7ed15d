"""Log-mel filterbank frames, computed with torch.stft (no weights, no torchaudio: its wheels are
tied to one torch build each and the one matching our torch does not load against it).

The mel scale is HTK's (2595 log10(1 + f / 700)), the filters triangular with unit peak and no
area normalisation, the power spectrum of a Hann-windowed, centred STFT: the same frames as
`torchaudio.transforms.MelSpectrogram(mel_scale="htk", norm=None, power=2)` followed by a log.
Shapes: samples (N,) -> frames (1 + N // hop, n_mels).
"""

from __future__ import annotations

import numpy as np
import torch

MEL_BREAK_HZ, MEL_SCALE = 700.0, 2595.0
LOG_FLOOR = 1e-6  # added to the mel power before the log: silence stays finite


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return MEL_SCALE * np.log10(1.0 + hz / MEL_BREAK_HZ)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return MEL_BREAK_HZ * (10.0 ** (mel / MEL_SCALE) - 1.0)


def mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels): triangles evenly spaced on the mel scale from 0 to Nyquist."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class LogMel:
    """Log-mel frames at `sample_rate / hop` frames/s."""

    def __init__(self, *, sample_rate: int, n_mels: int, win_ms: float, hop_ms: float) -> None:
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.win = round(sample_rate * win_ms / 1000)
        self.hop = round(sample_rate * hop_ms / 1000)
        if self.win < 2 or self.hop < 1:
            raise ValueError(
                f"log-mel window {win_ms} ms / hop {hop_ms} ms at {sample_rate} Hz "
                f"gives {self.win} / {self.hop} samples"
            )
        self.n_fft = 1 << (self.win - 1).bit_length()  # the next power of two
        self._filters = torch.from_numpy(mel_filters(self.n_fft, n_mels, sample_rate))
        self._window = torch.hann_window(self.win)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(N,) float -> (1 + N // hop, n_mels) float32."""
        spectrum = torch.stft(
            torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win,
            window=self._window,
            center=True,
            pad_mode="reflect" if len(samples) > self.n_fft // 2 else "constant",
            return_complex=True,
        )  # (n_fft // 2 + 1, frames)
        power = spectrum.abs().pow(2).T  # (frames, n_fft // 2 + 1)
        return torch.log(power @ self._filters + LOG_FLOOR).numpy()
