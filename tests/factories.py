"""Small in-memory objects for unit tests: tiny configs and padded batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vavl.batch import Batch
from vavl.config import ExperimentConfig, load_config

AUDIO_DIM, VISUAL_DIM = 12, 10


def tiny_config(*overrides: str) -> ExperimentConfig:
    return load_config(
        overrides=[
            f"model.audio_dim={AUDIO_DIM}",
            f"model.visual_dim={VISUAL_DIM}",
            "model.d_model=16",
            "model.n_heads=2",
            "model.conv_kernel=3",
            "model.branch_layers=1",
            "model.head_hidden=8",
            "model.dropout=0.0",
            *overrides,
        ]
    )


def random_batch(
    has_audio: list[bool],
    has_visual: list[bool],
    *,
    num_classes: int = 6,
    attributes: int | None = None,
    seed: int = 0,
) -> Batch:
    """Rows with random lengths; absent modalities have all-False masks and zero frames."""
    gen = torch.Generator().manual_seed(seed)
    size = len(has_audio)
    audio_len = torch.randint(3, 9, (size,), generator=gen) * torch.tensor(has_audio)
    visual_len = torch.randint(2, 6, (size,), generator=gen) * torch.tensor(has_visual)
    audio_mask = torch.arange(max(1, int(audio_len.max()))) < audio_len[:, None]
    visual_mask = torch.arange(max(1, int(visual_len.max()))) < visual_len[:, None]
    audio = torch.randn(*audio_mask.shape, AUDIO_DIM, generator=gen) * audio_mask[..., None]
    visual = torch.randn(*visual_mask.shape, VISUAL_DIM, generator=gen) * visual_mask[..., None]
    soft = torch.softmax(torch.randn(size, num_classes, generator=gen), dim=1)
    return Batch(
        ids=[f"utt{i:03d}" for i in range(size)],
        speakers=[f"spk{i % 3}" for i in range(size)],
        audio=audio,
        audio_mask=audio_mask,
        visual=visual,
        visual_mask=visual_mask,
        has_audio=torch.tensor(has_audio),
        has_visual=torch.tensor(has_visual),
        label=soft.argmax(dim=1) if attributes is None else None,
        soft_label=soft if attributes is None else None,
        attributes=None
        if attributes is None
        else 1 + 4 * torch.rand(size, attributes, generator=gen),
    )


def synthetic_store(
    root: Path, *, shard_rows: int, frame_dtype: str = "float32", **corpus: Any
) -> str:
    """A synthetic corpus at ROOT/corpus ingested into a store at ROOT/store; the store's path.

    `corpus` goes to `vavl.synthetic.write_corpus` (utterances, seed, dims, unpaired_share...).
    """
    from vavl.store import ingest_corpus_folder
    from vavl.synthetic import write_corpus

    write_corpus(root / "corpus", **corpus)
    ingest_corpus_folder(
        root / "corpus",
        str(root / "store"),
        shard_rows=shard_rows,
        frame_dtype=frame_dtype,
    )
    return str(root / "store")
