"""Frame feature extractors, each built once per Ray actor from local files only.

Audio extractors take mono samples at their `sample_rate`, (N,), and return (T, dim) float32 at
`frame_rate` frames/s; the visual one takes face crops (N, S, S, 3) uint8 and returns (N, dim).
Each describes itself for the store's manifest (`provenance()`): its name, the sha256 of its
weight files (None for log-mel), and every setting that changes its numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vavl.media import audio as A
from vavl.media.effnet import efficientnet_b2
from vavl.media.logmel import LogMel
from vavl.store import schema as S
from vavl.store.validate import Rejected

# Self-supervised speech models by extractor name: the `model_type` of the transformers config
# that the local folder must hold (the model is loaded with AutoModel, never downloaded).
SSL_MODEL_TYPES = {"wav2vec2": "wav2vec2", "hubert": "hubert", "wavlm": "wavlm"}
LOGMEL = "logmel"
EGEMAPS = "egemaps"  # the `egemaps` extra (opensmile): free for research use only, see README
AUDIO_EXTRACTORS = (*SSL_MODEL_TYPES, LOGMEL, EGEMAPS)
EGEMAPS_FRAME_RATE = 100.0  # eGeMAPS low-level descriptors: one every 10 ms
EFFNET_B2 = "effnet-b2"
VISUAL_EXTRACTORS = (EFFNET_B2,)
SSL_SAMPLE_RATE = 16000  # what every wav2vec2-family checkpoint was trained on
# ImageNet statistics that torchvision's EfficientNet weights expect, per RGB channel.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
UINT8_MAX = 255.0


class AudioExtractor(Protocol):
    name: str
    dim: int
    sample_rate: int
    frame_rate: float

    def __call__(self, samples: np.ndarray, file: str) -> np.ndarray: ...

    def provenance(self) -> dict[str, Any]: ...


def sha256_files(paths: list[Path]) -> tuple[str, dict[str, str]]:
    """(one digest over the files' names and digests, each file's digest)."""
    digests = {}
    for path in sorted(paths):
        h = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        digests[path.name] = h.hexdigest()
    lines = "".join(f"{name} {digest}\n" for name, digest in digests.items())
    return hashlib.sha256(lines.encode()).hexdigest(), digests


class LogMelExtractor:
    name = LOGMEL

    def __init__(self, *, n_mels: int, sample_rate: int, win_ms: float, hop_ms: float) -> None:
        self._mel = LogMel(sample_rate=sample_rate, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms)
        self.dim, self.sample_rate = n_mels, sample_rate
        self.frame_rate = self._mel.frame_rate
        self._settings = dict(win_ms=win_ms, hop_ms=hop_ms, n_fft=self._mel.n_fft)

    def __call__(self, samples: np.ndarray, file: str) -> np.ndarray:
        return self._mel(samples)

    def provenance(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            weights_sha256=None,
            dim=self.dim,
            sample_rate=self.sample_rate,
            frame_rate=self.frame_rate,
            **self._settings,
        )


class EGeMAPSExtractor:
    """The 25 eGeMAPS (v02) low-level descriptors of openSMILE (pitch, jitter, shimmer,
    loudness, formants, spectral slopes...), one frame per 10 ms; no weights."""

    name = EGEMAPS

    def __init__(self, *, sample_rate: int) -> None:
        try:
            import opensmile
        except ImportError:
            raise ValueError(
                "--audio-extractor egemaps needs the egemaps extra: pip install "
                "'vavl-platform[egemaps]' (opensmile; free for research use only, see README)"
            ) from None
        self._smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
        self.dim, self.sample_rate = len(self._smile.feature_names), sample_rate
        self.frame_rate = EGEMAPS_FRAME_RATE
        self._version = opensmile.__version__

    def __call__(self, samples: np.ndarray, file: str) -> np.ndarray:
        frames = self._smile.process_signal(samples, self.sample_rate).to_numpy(np.float32)
        if len(frames) == 0:
            raise Rejected(S.EMPTY_AUDIO, file, f"{len(samples)} samples: too short for eGeMAPS")
        return frames

    def provenance(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            weights_sha256=None,
            feature_set="eGeMAPSv02 low-level descriptors",
            opensmile=self._version,
            dim=self.dim,
            sample_rate=self.sample_rate,
            frame_rate=self.frame_rate,
        )


def read_ssl_config(name: str, model: str) -> tuple[Any, dict[str, Any]]:
    """The transformers config of the local model folder `model` (checked against `name`) and
    its preprocessor settings (preprocessor_config.json, {} when absent)."""
    from transformers import AutoConfig

    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"--audio-model {model}: not a local transformers model folder (no config.json); "
            "models are never downloaded: save one with save_pretrained(...) first"
        )
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type != SSL_MODEL_TYPES[name]:
        raise ValueError(
            f"--audio-model {model} holds a {config.model_type!r} model, "
            f"not the {SSL_MODEL_TYPES[name]!r} that --audio-extractor {name} needs"
        )
    preprocessor = folder / "preprocessor_config.json"
    settings = json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}
    return config, settings


class SSLExtractor:
    """Hidden layer `layer` of a wav2vec2 / HuBERT / WavLM model (0: the transformer's input,
    num_hidden_layers: its last layer). Only the layers up to `layer` + 1 are loaded: hidden
    state K is the output of layer K (for pre-norm models, before the final LayerNorm that the
    last hidden state alone gets), so that one more layer gives the same numbers as the full
    model. Audio longer than `chunk_seconds` runs in chunks of whole frames; a tail shorter
    than the convolutional receptive field gives no frame and is left out."""

    def __init__(
        self, *, name: str, model: str, layer: int | None, chunk_seconds: float, device: str
    ) -> None:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        config, settings = read_ssl_config(name, model)
        total = config.num_hidden_layers
        self.layer = total if layer is None else layer
        if not 0 <= self.layer <= total:
            raise ValueError(f"--audio-layer {layer}: {model} has hidden layers 0..{total}")
        self.name, self.dim, self.device = name, config.hidden_size, device
        self.sample_rate = int(settings.get("sampling_rate", SSL_SAMPLE_RATE))
        self.normalize = bool(settings.get("do_normalize", True))
        self.stride = int(np.prod(config.conv_stride))
        self.receptive_field = 1 + sum(
            (k - 1) * int(np.prod(config.conv_stride[:i])) for i, k in enumerate(config.conv_kernel)
        )
        self.frame_rate = self.sample_rate / self.stride
        self.chunk = max(1, round(chunk_seconds * self.frame_rate)) * self.stride
        self.chunk_seconds, self.total_layers = chunk_seconds, total
        logging.getLogger("transformers").setLevel(logging.ERROR)  # unused top layers: intended
        hf_logging.disable_progress_bar()  # a bar per actor per load: noise in the job's log
        self._model = AutoModel.from_pretrained(
            model, local_files_only=True, num_hidden_layers=min(self.layer + 1, total)
        )
        self._model = self._model.float().to(device).eval()
        files = [p for p in Path(model).iterdir() if p.is_file()]
        self.weights_sha256, self.files = sha256_files(files)
        self.model_path = model

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray, file: str) -> np.ndarray:
        spans = [
            (a, b)
            for a, b in A.chunk_spans(len(samples), self.chunk)
            if b - a >= self.receptive_field
        ]
        if not spans:
            raise Rejected(
                S.EMPTY_AUDIO,
                file,
                f"{len(samples)} samples at {self.sample_rate} Hz: shorter than the model's "
                f"receptive field ({self.receptive_field} samples)",
            )
        return np.concatenate([self._frames(samples[a:b]) for a, b in spans])

    def _frames(self, chunk: np.ndarray) -> np.ndarray:
        """(n,) -> (T, dim) for one chunk."""
        if self.normalize:  # what the checkpoint's feature extractor does: zero mean, unit var
            chunk = (chunk - chunk.mean()) / np.sqrt(chunk.var() + 1e-7)
        inputs = torch.from_numpy(np.ascontiguousarray(chunk, np.float32))[None].to(self.device)
        hidden = self._model(inputs, output_hidden_states=True).hidden_states[self.layer]
        return hidden[0].float().cpu().numpy()  # (1, T, dim) -> (T, dim)

    def provenance(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            model=self.model_path,
            weights_sha256=self.weights_sha256,
            files=self.files,
            layer=self.layer,
            layers_in_model=self.total_layers,
            dim=self.dim,
            sample_rate=self.sample_rate,
            frame_rate=self.frame_rate,
            chunk_seconds=self.chunk_seconds,
            normalize=self.normalize,
        )


class EffNetExtractor:
    """EfficientNet-B2 face embeddings (1408-d) from a local state dict file (torchvision's
    parameter names; see vavl.media.effnet)."""

    name = EFFNET_B2

    def __init__(self, *, weights: str, image_size: int, device: str) -> None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"--visual-model {weights}: no such weights file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = efficientnet_b2(classes=int(state["classifier.1.weight"].shape[0]))
        model.load_state_dict(state, strict=True)
        self._model = model.to(device).eval()
        self.dim, self.image_size, self.device = model.dim, image_size, device
        self.weights_sha256 = sha256_files([path])[0]
        self.model_path = weights
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 -> (N, dim) float32."""
        images = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float() / UINT8_MAX
        return self._model.embed((images - self._mean) / self._std).float().cpu().numpy()

    def provenance(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            model=self.model_path,
            weights_sha256=self.weights_sha256,
            dim=self.dim,
            image_size=self.image_size,
        )
