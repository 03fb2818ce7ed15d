"""The paper's per-batch schedule as three losses: visual step, audio step, fusion step.

VAVL trains each branch on the rows that have its modality, so an audio-only or visual-only
utterance still teaches its branch and the shared block, and then trains the fusion head on the
rows that have both, from the branches' representations detached.

How the three steps meet DDP. The three phases own disjoint parameters (visual branch, audio
branch, fusion head) except the shared block, which both branches own. We compute all three
losses in ONE forward through the DDP-wrapped model (each branch runs once, only on its rows) and
take ONE backward and ONE optimizer step on their sum. Every parameter then receives exactly its
phase's gradient (the shared block the sum of the audio and visual phases' gradients), DDP
all-reduces each gradient once per batch, and `find_unused_parameters` stays off. The paper's
code instead steps after each phase (three backward passes, recomputing both encoders for the
fusion pass), which under DDP would either need `find_unused_parameters=True` (a graph traversal
every step and all-reduces of every bucket, used or not, three times) or hang when a phase skips
parameters. The only difference from stepping sequentially is that later phases do not see the
earlier phases' update within the same batch: a second-order effect at the paper's lr.

A rank whose batch has no row of some modality must still give every parameter a gradient, or
the other ranks wait forever in DDP's all-reduce: such a phase contributes `0 * sum(params)`,
which keeps its parameters in the graph with zero gradient.

A model of a single-modality corpus (`VAVL.branches` is ("audio",) or ("visual",)) has one phase:
the others have no parameters, contribute a constant 0 and log nothing; every parameter it has
still gets a gradient at every step, by the rule above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vavl.batch import Batch
from vavl.model import VAVL, VAVLOutput
from vavl.objectives import TaskObjective, reconstruction_loss

PHASES = ("visual", "audio", "fusion")


@dataclass
class PhaseLosses:
    visual: torch.Tensor
    audio: torch.Tensor
    fusion: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)  # train/{phase}/{part} -> value
    rows: dict[str, int] = field(default_factory=dict)  # phase -> rows that trained it

    @property
    def total(self) -> torch.Tensor:
        return self.visual + self.audio + self.fusion


def unwrap(model: nn.Module) -> VAVL:
    """The VAVL inside a DDP (or other) wrapper."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, VAVL):
        raise TypeError(f"expected a VAVL model, got {type(inner).__name__}")
    return inner


def forward_batch(model: nn.Module, batch: Batch, **options: bool) -> VAVLOutput:
    """`model` (a VAVL, or one in a DDP wrapper) on the modalities of `batch` it has a branch
    for: a single-modality model is never handed the other modality's (empty) tensors."""
    return model(**batch.inputs(unwrap(model).modalities), **options)


def _zero_through(params: list[nn.Parameter]) -> torch.Tensor:
    return sum(p.sum() for p in params) * 0.0


def phase_losses(
    model: nn.Module, batch: Batch, objective: TaskObjective, reconstruction_weight: float
) -> PhaseLosses:
    """Losses of the visual, audio and fusion phases on one batch (rows split by presence).
    A phase the model has no branch for is a constant 0 (see the module docstring)."""
    out = forward_batch(model, batch, detach_fusion_inputs=True)
    vavl = unwrap(model)
    device = batch.has_audio.device
    result = PhaseLosses(*(torch.zeros((), device=device) for _ in PHASES))
    for phase in (p for p in PHASES if p in vavl.branches):
        rows = getattr(out.present, phase)
        n_rows = int(rows.sum()) if rows is not None else 0
        result.rows[phase] = n_rows
        if n_rows == 0:
            setattr(result, phase, _zero_through(vavl.branch_parameters(phase)))
            continue
        sub = batch.select(rows)
        prediction = getattr(out.predictions, phase)[rows].float()
        loss = objective.prediction_loss(prediction, sub)
        result.logs[f"train/{phase}/prediction"] = float(loss.detach())
        if phase != "fusion":
            recon = reconstruction_loss(
                getattr(out.reconstructions, phase)[rows].float(),
                getattr(out.recon_targets, phase)[rows].float(),
            )
            result.logs[f"train/{phase}/reconstruction"] = float(recon.detach())
            loss = loss + reconstruction_weight * recon
        setattr(result, phase, loss)
        result.logs[f"train/{phase}/loss"] = float(loss.detach())
    result.logs["train/loss"] = float(result.total.detach())
    return result
