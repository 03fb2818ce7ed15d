"""One optimizer step of VAVL on one batch: what the trainer does per batch, and what
`bench/model.py` times, so that the two measure the same work."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vavl.batch import Batch
from vavl.objectives import TaskObjective
from vavl.phases import PhaseLosses, phase_losses
from vavl.runtime import autocast


@dataclass(frozen=True)
class StepSettings:
    precision: str  # as resolved by vavl.runtime.resolve_precision: fp32, bf16 or fp16
    reconstruction_weight: float
    grad_clip: float | None


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    batch: Batch,
    objective: TaskObjective,
    settings: StepSettings,
) -> PhaseLosses:
    """The three phases' losses (`vavl.phases`) under autocast, one backward of their sum,
    gradient clipping and one optimizer step. `batch` must already be on the model's device;
    the caller sets the lr of `optimizer` beforehand."""
    device = batch.has_audio.device
    with autocast(device, settings.precision):
        losses = phase_losses(model, batch, objective, settings.reconstruction_weight)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(losses.total).backward()
        scaler.unscale_(optimizer)
    else:
        losses.total.backward()
    if settings.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return losses
