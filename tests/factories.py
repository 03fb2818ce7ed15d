"""Small objects shared by the tests: tiny configs and recipes, padded batches, synthetic stores,
models with moved weights and the MLflow run a training leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vavl.batch import Batch
from vavl.config import ExperimentConfig, load_config

AUDIO_DIM, VISUAL_DIM = 12, 10
REPO = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO / "configs" / "demo.yaml"
PROBE = REPO / "tests" / "heavy_imports.py"
# A 16-wide model in batches of 8: what every Ray-using test trains on top of the demo recipe.
TINY_TRAINING = (
    "optim.batch_size=8",
    "model.d_model=16",
    "model.n_heads=2",
    "model.head_hidden=16",
    "model.conv_kernel=3",
    "tune.grace_period=1",  # test runs train 1-2 epochs; the demo's rungs start at epoch 10
)


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
            # Not the default auto, which is bf16 on a CPU with AVX512-BF16: the same numbers on
            # every machine the tests run on.
            "train.precision=fp32",
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


def tiny_recipe(store: str, *overrides: str) -> ExperimentConfig:
    """configs/demo.yaml on `store` with TINY_TRAINING, then `overrides`."""
    return load_config(DEMO_RECIPE, [f"data.store={store}", *TINY_TRAINING, *overrides])


def stepped_model(cfg: ExperimentConfig, seed: int = 0) -> torch.nn.Module:
    """A model of `cfg` whose random weights two Adam steps moved (none keeps its initial value)."""
    from vavl.builders import build_model, build_optimizer

    torch.manual_seed(seed)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    for _ in range(2):
        optimizer.zero_grad()
        audio = torch.randn(3, 5, cfg.model.audio_dim)
        visual = torch.randn(3, 4, cfg.model.visual_dim)
        model(audio=audio, visual=visual).predictions.fusion.pow(2).mean().backward()
        optimizer.step()
    return model.eval()


def log_training_run(
    model: torch.nn.Module, cfg: ExperimentConfig, store: Any, **kwargs: Any
) -> tuple[str, str]:
    """What `vavl.train.fit` leaves in MLflow for `store` (a FeatureStore): config.yaml,
    manifest.json and the model. Returns the run id and the model's URI."""
    import json

    from vavl import tracking

    run_id = tracking.start_run(cfg.train.experiment, "trained", params={})
    tracking.log_text(run_id, cfg.to_yaml(), "config.yaml")
    tracking.log_text(run_id, json.dumps(store.manifest), "manifest.json")
    stats = store.manifest.get("normalization")
    uri = tracking.log_model(run_id, model, cfg, stats, **kwargs)
    tracking.end_run(run_id)
    return run_id, uri


def save_model_checkpoint(
    directory: Path, model: torch.nn.Module, cfg: ExperimentConfig, *, epoch: int = 0
) -> str:
    """A checkpoint directory holding `model` as a training of `cfg` leaves one after `epoch`
    epochs (with a fresh optimizer's state); its path."""
    from vavl.builders import build_optimizer
    from vavl.checkpoint import TrainingState, save_checkpoint

    save_checkpoint(
        directory,
        model=model,
        optimizer=build_optimizer(cfg, model),
        scaler=None,
        state=TrainingState(epoch=epoch),
        config=cfg,
        meta={},
    )
    return str(directory)


@dataclass(frozen=True)
class ProbedRun:
    status: int
    stdout: str
    stderr: str
    imported: list[str]  # which of torch, Ray and MLflow the script had imported when it ended


def run_probed(tmp_path: Path, script: str, *args: str) -> ProbedRun:
    """`python SCRIPT ARGS` from the repository root, through tests/heavy_imports.py."""
    report = tmp_path / "imports.json"
    done = subprocess.run(
        [sys.executable, str(PROBE), str(report), str(REPO / script), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    found = json.loads(report.read_text())
    assert found["status"] == done.returncode, done.stderr
    return ProbedRun(done.returncode, done.stdout, done.stderr, found["imported"])
