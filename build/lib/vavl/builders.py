"""Builders: wire a model and its optimizer from an experiment config."""

from __future__ import annotations

import torch

from vavl.config import ExperimentConfig
from vavl.model import VAVL


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
