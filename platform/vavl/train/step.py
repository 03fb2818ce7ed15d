"""One optimizer step of VAVL: what the trainer does per step (`backward_pass` per batch, then
`optimizer_step`; several batches per step with `optim.accumulate_batches`), and what
`bench/model.py` times (`train_step`: one batch, one step), so that the two measure the same
work."""

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


def backward_pass(
    model: nn.Module,
    scaler: torch.amp.GradScaler | None,
    batch: Batch,
    objective: TaskObjective,
    settings: StepSettings,
    weight: float = 1.0,
) -> PhaseLosses:
    """The three phases' losses (`vavl.phases`) under autocast and the backward of `weight` x
    their sum, added to the parameters' gradients (the share of one batch in an optimizer step
    of several). `batch` must already be on the model's device."""
    device = batch.has_audio.device
    with autocast(device, settings.precision):
        losses = phase_losses(model, batch, objective, settings.reconstruction_weight)
    total = losses.total * weight
    if scaler is not None:
        total = scaler.scale(total)
    total.backward()
    return losses


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float | None,
) -> None:
    """Gradient clipping, one optimizer step on the gradients accumulated since the last one,
    and their reset; the caller sets the lr of `optimizer` beforehand."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    batch: Batch,
    objective: TaskObjective,
    settings: StepSettings,
) -> PhaseLosses:
    """One batch, one optimizer step: `backward_pass` then `optimizer_step`."""
    optimizer.zero_grad(set_to_none=True)
    losses = backward_pass(model, scaler, batch, objective, settings)
    optimizer_step(model, optimizer, scaler, settings.grad_clip)
    return losses
