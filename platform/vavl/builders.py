"""Builders: wire a model, its optimizer and the store's batch layout from an experiment config."""

from __future__ import annotations

import torch

from vavl.config import ExperimentConfig
from vavl.model import VAVL
from vavl.store import BatchSpec, FeatureStore


def build_model(cfg: ExperimentConfig) -> VAVL:
    """VAVL with the config's sizes; feature dims come from `cfg.model` (bound to the store)."""
    return VAVL(
        cfg.model, num_outputs=cfg.task.num_outputs, residual_weight=cfg.loss.residual_weight
    )


def build_optimizer(cfg: ExperimentConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam at the peak `optim.lr`; a training loop sets each step's lr from `vavl.schedule`."""
    return torch.optim.Adam(
        model.parameters(),
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        weight_decay=cfg.optim.weight_decay,
    )


def build_batch_spec(cfg: ExperimentConfig, store: FeatureStore) -> BatchSpec:
    """How `store`'s rows become the model's batches under the config's normalisation."""
    return store.batch_spec(
        normalize=cfg.data.normalize, min_speaker_utterances=cfg.data.speaker_min_utterances
    )
