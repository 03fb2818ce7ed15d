"""Synthetic media and random-weight models for tests and benchmarks (nothing downloaded): sine
sweeps and noise as PCM wav files, short mp4 clips (a drawn face, or blank) with or without a
sound track, a labels CSV for them, a wav2vec2 model folder of any size and an EfficientNet-B2
state dict, both with random weights (the same compute as trained ones)."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

PCM_MAX = 32767  # 16-bit PCM full scale
FACE_SIZE = 70  # half-width in pixels of the drawn face: the bundled Haar cascade finds it
BACKGROUND, SKIN = 60, (225, 190, 160)
SWEEP_HZ = (100.0, 3000.0)  # below the Nyquist frequency of every rate tested (8 kHz: 4 kHz)


def tone(
    seconds: float, rate: int, channels: int, *, kind: str = "sweep", seed: int = 0
) -> np.ndarray:
    """(N, C) float in [-1, 1]: a SWEEP_HZ linear sine sweep (amplitude 0.5), or noise."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    if kind == "sweep":
        low, high = SWEEP_HZ
        phase = low * t + (high - low) * t**2 / (2 * max(seconds, 1e-9))
        mono = 0.5 * np.sin(2 * np.pi * phase)
    else:
        mono = 0.3 * np.random.default_rng(seed).standard_normal(n).clip(-3, 3) / 3
    return np.repeat(mono[:, None], channels, axis=1)


def write_wav(
    path: Path, seconds: float, rate: int, channels: int = 1, kind: str = "sweep"
) -> Path:
    samples = (tone(seconds, rate, channels, kind=kind) * PCM_MAX).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def face_picture(height: int = 240, width: int = 320, *, face: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a cartoon face (skin oval, dark eyes and brows, nose, mouth)."""
    import cv2

    picture = np.full((height, width, 3), BACKGROUND, np.uint8)
    if not face:
        return picture
    cx, cy, s = width // 2, height // 2, FACE_SIZE
    cv2.ellipse(picture, (cx, cy), (s, int(s * 1.3)), 0, 0, 360, SKIN, -1)
    for ex in (cx - s // 2 + 5, cx + s // 2 - 5):
        cv2.ellipse(picture, (ex, cy - s // 4), (s // 5, s // 9), 0, 0, 360, (40, 30, 30), -1)
        brow = cy - s // 2 + 5
        cv2.line(picture, (ex - s // 4, brow), (ex + s // 4, brow), (60, 40, 30), s // 14)
    cv2.line(picture, (cx, cy - s // 6), (cx, cy + s // 4), (170, 130, 110), s // 12)
    cv2.ellipse(picture, (cx, cy + s // 2 + 5), (s // 3, s // 10), 0, 0, 360, (120, 50, 50), -1)
    return picture


def write_video(
    path: Path,
    seconds: float,
    fps: int,
    *,
    face: bool = True,
    face_every: int = 1,
    audio_rate: int | None = 16000,
) -> Path:
    """A clip of `seconds` at `fps` (mpeg4 video; aac sound when `audio_rate`): the face in one
    frame of every `face_every` (a blank picture in the others), or blank throughout."""
    import av

    frames = round(seconds * fps)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        sound = out.add_stream("aac", rate=audio_rate) if audio_rate else None
        for i in range(frames):
            picture = face_picture(face=face and i % face_every == 0)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = tone(seconds, audio_rate, 1).T.astype(np.float32)  # (1, N)
            step = 1024
            for start in range(0, samples.shape[1], step):
                chunk = np.ascontiguousarray(samples[:, start : start + step])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = audio_rate, start
                frame.time_base = Fraction(1, audio_rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def tiny_wav2vec2(
    folder: Path,
    *,
    model_type: str = "wav2vec2",
    layers: int = 3,
    hidden: int = 16,
    heads: int = 2,
    conv_width: int = 8,
    pos_kernel: int = 16,
    pos_groups: int = 2,
    seed: int = 0,
) -> Path:
    """A random wav2vec2 (or `model_type` hubert / wavlm) with the real convolutional front
    end's kernels and strides (320 samples: 50 frames/s at 16 kHz), `conv_width` channels, and
    a pre-norm transformer of `layers` x `hidden` (the large model: 24 x 1024, 16 heads,
    conv_width 512, positional convolution of kernel 128 in 16 groups), saved with
    `save_pretrained`."""
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        model_type,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        conv_dim=(conv_width,) * 7,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=pos_groups,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    AutoModel.from_config(config).eval().save_pretrained(folder)
    return folder


def random_effnet(path: Path, seed: int = 0) -> Path:
    """An EfficientNet-B2 state dict (torchvision's names) with random weights."""
    import torch

    from vavl.media.effnet import efficientnet_b2

    torch.manual_seed(seed)
    torch.save(efficientnet_b2().state_dict(), path)
    return path


CLASSES = ("angry", "sad", "disgust", "fear", "neutral", "happy")
SPLIT_NAMES = {"train": "Train", "dev": "Development", "test": "Test"}


def write_labels(path: Path, ids: list[str], splits: list[str]) -> Path:
    """A CREMA-D style labels CSV: one-hot consensus over the six classes, cycling the classes
    and 4 speakers; `splits` (train/dev/test) per id."""
    lines = [f"FileName,{','.join(CLASSES)},SpkrID,Gender,Split_Set"]
    for i, (uid, split) in enumerate(zip(ids, splits, strict=True)):
        onehot = ",".join("1.0" if c == i % len(CLASSES) else "0.0" for c in range(len(CLASSES)))
        gender = "Female" if i % 2 else "Male"
        lines.append(f"{uid}.wav,{onehot},{1001 + i % 4},{gender},{SPLIT_NAMES[split]}")
    path.write_text("\n".join(lines) + "\n")
    return path
