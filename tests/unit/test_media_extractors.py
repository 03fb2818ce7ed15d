"""vavl.media extractors: log-mel and wav2vec2-family frame counts at their stated rates, the
chosen hidden layer, chunking; EfficientNet-B2 with torchvision's parameter names and sizes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av", reason="needs the media extra (av)")

from vavl.media.effnet import efficientnet_b2
from vavl.media.extractors import EffNetExtractor, LogMelExtractor, sha256_files
from vavl.media.logmel import mel_filters
from vavl.media.samples import tone

RATE = 16000
# torchvision.models.efficientnet_b2: 9,109,994 parameters (its weights' documented num_params),
# 1408 features before the classifier.
B2_PARAMETERS, B2_DIM = 9_109_994, 1408


def test_logmel_frames_at_its_hop_rate_and_the_tone_in_its_band() -> None:
    extractor = LogMelExtractor(n_mels=40, sample_rate=RATE, win_ms=25.0, hop_ms=10.0)
    assert extractor.frame_rate == 100.0
    seconds = 1.0
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    frames = extractor(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32), "tone")
    assert frames.shape == (1 + n // extractor._mel.hop, 40)
    assert np.isfinite(frames).all()
    # The loudest band is the one whose filter peaks nearest 1 kHz.
    filters = mel_filters(extractor._mel.n_fft, 40, RATE)
    bin_of_1khz = round(1000.0 / (RATE / 2) * (extractor._mel.n_fft // 2))
    assert frames.mean(axis=0).argmax() == filters[bin_of_1khz].argmax()
    assert np.isfinite(extractor(np.zeros(n, np.float32), "silence")).all()


def test_mel_filters_are_triangles_rising_in_frequency_and_covering_the_spectrum() -> None:
    filters = mel_filters(512, 40, RATE)  # (257 bins, 40 bands)
    assert filters.shape == (257, 40)
    # Peaks of 1 fall between FFT bins for the narrow low bands: sampled, they are lower.
    assert ((filters >= 0) & (filters <= 1)).all() and (filters.max(axis=0) > 0.5).all()
    assert (np.diff(filters.argmax(axis=0)) >= 0).all()
    assert (filters[1:-1].sum(axis=1) > 0).all()


def test_effnet_b2_has_torchvisions_names_and_sizes(tmp_path: Path) -> None:
    model = efficientnet_b2()
    assert sum(p.numel() for p in model.parameters()) == B2_PARAMETERS
    names = model.state_dict()
    assert names["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert names["features.1.0.block.1.fc1.weight"].shape == (8, 32, 1, 1)
    assert names["features.8.0.weight"].shape == (B2_DIM, 352, 1, 1)
    assert names["classifier.1.weight"].shape == (1000, B2_DIM)


def test_effnet_extractor_embeds_small_crops(effnet_weights: Path) -> None:
    extractor = EffNetExtractor(weights=str(effnet_weights), image_size=32, device="cpu")
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = extractor(crops)
    assert out.shape == (3, B2_DIM) and out.dtype == np.float32 and np.isfinite(out).all()
    assert extractor.provenance()["weights_sha256"] == sha256_files([effnet_weights])[0]
    assert np.allclose(extractor(crops[:1]), out[:1], atol=1e-5)  # each crop on its own


@pytest.fixture(scope="module")
def ssl_extractor(tiny_wav2vec2_dir: Path):
    from vavl.media.extractors import SSLExtractor

    return SSLExtractor(
        name="wav2vec2", model=str(tiny_wav2vec2_dir), layer=2, chunk_seconds=20.0, device="cpu"
    )


def conv_frames(samples: int) -> int:
    """Frames of wav2vec2's front end (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2)."""
    for kernel, stride in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True):
        samples = (samples - kernel) // stride + 1
    return samples


def test_wav2vec2_frames_at_50_per_second_from_the_chosen_layer(
    ssl_extractor, tiny_wav2vec2_dir: Path
) -> None:
    from transformers import AutoModel

    assert (ssl_extractor.frame_rate, ssl_extractor.receptive_field) == (50.0, 400)
    samples = tone(1.5, RATE, 1)[:, 0].astype(np.float32)
    frames = ssl_extractor(samples, "sweep")
    assert frames.shape == (conv_frames(len(samples)), 16)
    assert abs(len(frames) - 1.5 * 50) <= 1
    assert np.isfinite(frames).all()
    # Loading only layers 0..2 of 3 gives the full model's hidden state 2.
    full = AutoModel.from_pretrained(tiny_wav2vec2_dir, local_files_only=True).eval()
    normed = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    with torch.inference_mode():
        hidden = full(torch.from_numpy(normed)[None], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(frames, hidden[2][0].numpy(), atol=1e-4)
    provenance = ssl_extractor.provenance()
    assert provenance["layer"] == 2 and provenance["layers_in_model"] == 3
    assert provenance["weights_sha256"] == sha256_files(list(tiny_wav2vec2_dir.iterdir()))[0]


def test_long_audio_runs_in_chunks_of_whole_frames(tiny_wav2vec2_dir: Path) -> None:
    from vavl.media.extractors import SSLExtractor

    chunked = SSLExtractor(
        name="wav2vec2", model=str(tiny_wav2vec2_dir), layer=1, chunk_seconds=0.5, device="cpu"
    )
    assert chunked.chunk == 8000  # 25 frames of 320 samples
    samples = tone(1.3, RATE, 1)[:, 0].astype(np.float32)  # 20800: chunks 8000, 8000, 4800
    frames = chunked(samples, "sweep")
    assert len(frames) == 2 * conv_frames(8000) + conv_frames(4800)
    assert math.isclose(len(frames) / 1.3, 50, rel_tol=0.05)


def test_wrong_model_type_and_layer_are_named(tiny_wav2vec2_dir: Path) -> None:
    from vavl.media.extractors import SSLExtractor

    def build(name: str, layer: int | None) -> None:
        SSLExtractor(
            name=name, model=str(tiny_wav2vec2_dir), layer=layer, chunk_seconds=1.0, device="cpu"
        )

    with pytest.raises(ValueError, match="holds a 'wav2vec2' model, not the 'hubert'"):
        build("hubert", None)
    with pytest.raises(ValueError, match=r"--audio-layer 4: .* has hidden layers 0\.\.3"):
        build("wav2vec2", 4)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        SSLExtractor(
            name="wav2vec2", model="/nonexistent", layer=None, chunk_seconds=1.0, device="cpu"
        )


def test_the_command_offers_exactly_the_library_extractors() -> None:
    from vavl.commands import featurize
    from vavl.media import extractors

    assert featurize.AUDIO_EXTRACTORS == extractors.AUDIO_EXTRACTORS
    assert featurize.VISUAL_EXTRACTORS == extractors.VISUAL_EXTRACTORS


def test_egemaps_descriptors_at_100_per_second() -> None:
    pytest.importorskip("opensmile", reason="needs the egemaps extra (opensmile)")
    from vavl.media.extractors import EGeMAPSExtractor

    extractor = EGeMAPSExtractor(sample_rate=RATE)
    frames = extractor(tone(1.5, RATE, 1)[:, 0].astype(np.float32), "sweep")
    assert extractor.dim == 25 and frames.shape[1] == 25
    assert abs(len(frames) - 1.5 * extractor.frame_rate) <= 10  # its 50 ms analysis window
    assert np.isfinite(frames).all()
    assert extractor.provenance()["weights_sha256"] is None


@pytest.mark.parametrize("model_type", ["hubert", "wavlm"])
def test_hubert_and_wavlm_give_the_full_models_hidden_layer(
    model_type: str, tmp_path: Path
) -> None:
    from transformers import AutoModel

    from vavl.media.extractors import SSLExtractor
    from vavl.media.samples import tiny_wav2vec2

    folder = tiny_wav2vec2(tmp_path / model_type, model_type=model_type)
    extractor = SSLExtractor(
        name=model_type, model=str(folder), layer=1, chunk_seconds=20.0, device="cpu"
    )
    samples = tone(0.5, RATE, 1)[:, 0].astype(np.float32)
    frames = extractor(samples, "sweep")
    assert frames.shape == (conv_frames(len(samples)), 16)
    full = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    normed = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    with torch.inference_mode():
        hidden = full(torch.from_numpy(normed)[None], output_hidden_states=True).hidden_states
    np.testing.assert_allclose(frames, hidden[1][0].numpy(), atol=1e-4)
