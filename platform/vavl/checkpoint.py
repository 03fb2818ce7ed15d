"""Training checkpoints: everything a resumed run needs, in one directory.

`state.pt` holds the model (unwrapped), the weight average where the run keeps one
(`vavl.averaging`; it is the checkpoint's trained model), optimizer and grad-scaler states, the
epoch and step
counts, the per-epoch metric history, the best score so far, the plateau schedule's lr scale and
whether early stopping ended the run (so a restarted worker does not train on); `config.yaml` the
resolved config; `meta.json` the store's manifest id and the MLflow run id. RNG streams are not
saved: every epoch reseeds from (seed, epoch, rank), so a resumed epoch draws what it would have
drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vavl.builders import build_model
from vavl.config import ExperimentConfig, validate_config
from vavl.model import VAVL

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"


@dataclass
class TrainingState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_score: float | None = None  # of the smoothed selection metric
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one metrics dict per epoch
    # The plateau schedule's state (vavl.schedule.plateau_update); the rest of the lr schedule
    # is a function of `step`. Checkpoints older than these fields load with the defaults.
    lr_scale: float = 1.0
    plateau_wait: int = 0  # epochs without improvement since the last improvement or halving
    stopped_early_at: int | None = None  # the epoch early stopping ended the run after


def save_checkpoint(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: TrainingState,
    config: ExperimentConfig,
    meta: dict[str, Any],
    averaged: torch.nn.Module | None = None,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "averaged": averaged.state_dict() if averaged is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "state": state.__dict__,
    }
    torch.save(payload, directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(config.to_yaml())
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


@dataclass
class LoadedCheckpoint:
    model: dict[str, torch.Tensor]  # the raw weights training continues from
    averaged: dict[str, Any] | None  # an AveragedModel's state (`vavl.averaging`), or None
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    state: TrainingState
    config: ExperimentConfig
    meta: dict[str, Any]


def load_checkpoint(directory: str | Path) -> LoadedCheckpoint:
    directory = Path(directory)
    if not (directory / STATE_FILE).is_file():
        raise FileNotFoundError(f"{directory} is not a VAVL checkpoint: no {STATE_FILE}")
    payload = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    config = validate_config(
        _load_yaml(directory / CONFIG_FILE), source=str(directory / CONFIG_FILE)
    )
    return LoadedCheckpoint(
        model=payload["model"],
        averaged=payload.get("averaged"),
        optimizer=payload["optimizer"],
        scaler=payload["scaler"],
        state=TrainingState(**payload["state"]),
        config=config,
        meta=json.loads((directory / META_FILE).read_text()),
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def restore_model(directory: str | Path) -> tuple[VAVL, ExperimentConfig, TrainingState]:
    """The trained model of a checkpoint (eval mode, CPU): its weight average where the run
    kept one, else its raw weights; with its config and training state."""
    loaded = load_checkpoint(directory)
    model = build_model(loaded.config)
    model.load_state_dict(averaged_weights(loaded.averaged) or loaded.model)
    return model.eval(), loaded.config, loaded.state


def averaged_weights(averaged: dict[str, Any] | None) -> dict[str, torch.Tensor] | None:
    """The model weights inside an AveragedModel's state dict (its keys `module.<name>`)."""
    if averaged is None:
        return None
    prefix = "module."
    return {k[len(prefix) :]: v for k, v in averaged.items() if k.startswith(prefix)}
