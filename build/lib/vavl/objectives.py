"""Differentiable training objectives: CCC for attributes, cross-entropy for classes, feature MSE.

Shapes: B utterances, A attributes, K classes, D features. Every loss is computed in float32 (so
bf16/fp16 outputs of mixed precision do not lose the small variances CCC divides by) and returns
`x.sum() * 0` for an empty batch: a zero that keeps the autograd graph, never NaN. An empty batch is
normal here, e.g. the audio step of a batch in which no row has audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vavl.batch import Batch
from vavl.config import TaskConfig
from vavl.soft_labels import SOFT_SUM_TOLERANCE  # the one ingest accepts: what it stores trains

CCC_EPS = 1e-8  # keeps CCC finite (and 0) when both inputs are constant


def _require_2d_pair(pred: Tensor, target: Tensor, what: str) -> None:
    if pred.dim() != 2 or pred.shape != target.shape:
        raise ValueError(
            f"{what} needs two (B, N) tensors of one shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )


def _empty_loss(outputs: Tensor) -> Tensor:
    # A zero connected to the graph, so backward() and DDP's gradient hooks still run.
    return outputs.sum() * 0.0


def ccc(pred: Tensor, target: Tensor) -> Tensor:
    """Concordance correlation of each column of `pred` (B, A) with `target` (B, A) -> (A,).

    Population (biased) moments. With B == 1 there is no co-variation: the covariance is exactly
    0, so CCC is 0 (the loss term is the constant 1 with zero gradient). Constant columns likewise
    give 0 thanks to `CCC_EPS` in the denominator instead of 0/0.
    """
    _require_2d_pair(pred, target, "ccc")
    if pred.shape[0] == 0:
        raise ValueError("ccc of an empty batch (B=0) is undefined")
    x, y = pred.float(), target.float()
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    dx, dy = x - mean_x, y - mean_y
    var_x, var_y = (dx * dx).mean(dim=0), (dy * dy).mean(dim=0)
    cov = (dx * dy).mean(dim=0)
    return 2.0 * cov / (var_x + var_y + (mean_x - mean_y) ** 2 + CCC_EPS)


def _normalised_weights(
    weights: Tensor | Sequence[float] | None, size: int, what: str, like: Tensor
) -> Tensor:
    """`weights` as a float32 tensor on `like`'s device that sums to 1 (uniform when None)."""
    if weights is None:
        return torch.full((size,), 1.0 / size, device=like.device)
    values = torch.as_tensor(weights, dtype=torch.float32, device=like.device).reshape(-1)
    if values.numel() != size:
        raise ValueError(f"{what} has {values.numel()} values for {size} columns")
    if bool((values < 0).any()) or not bool(values.sum() > 0):
        raise ValueError(f"{what} must be >= 0 with a positive sum, got {values.tolist()}")
    return values / values.sum()


def ccc_loss(
    pred: Tensor, target: Tensor, weights: Tensor | Sequence[float] | None = None
) -> Tensor:
    """Weighted mean over attributes of (1 - CCC); `weights` (A,) are normalised to sum 1."""
    _require_2d_pair(pred, target, "ccc_loss")
    if pred.shape[0] == 0:
        return _empty_loss(pred)
    w = _normalised_weights(weights, pred.shape[1], "attribute weights", pred)
    return (w * (1.0 - ccc(pred, target))).sum()


def _check_soft_target(target: Tensor) -> None:
    sums = target.sum(dim=1)
    bad = ((sums - 1.0).abs() > SOFT_SUM_TOLERANCE).nonzero(as_tuple=True)[0]
    if bad.numel():
        row = int(bad[0])
        raise ValueError(f"soft target row {row} sums to {float(sums[row]):.6f}, expected 1")
    negative = (target < 0).any(dim=1).nonzero(as_tuple=True)[0]
    if negative.numel():
        raise ValueError(f"soft target row {int(negative[0])} has a negative probability")


def _check_hard_target(target: Tensor, batch: int, classes: int) -> None:
    if target.shape != (batch,):
        raise ValueError(f"hard target must be (B,)=({batch},), got {tuple(target.shape)}")
    out_of_range = ((target < 0) | (target >= classes)).nonzero(as_tuple=True)[0]
    if out_of_range.numel():
        row = int(out_of_range[0])
        raise ValueError(
            f"hard target row {row} is class {int(target[row])}, not in [0, {classes})"
        )


def cross_entropy_loss(
    logits: Tensor, target: Tensor, class_weights: Tensor | Sequence[float] | None = None
) -> Tensor:
    """Cross-entropy of `logits` (B, K) against class indices (B,) int64 or distributions (B, K).

    Soft targets: per row -sum_k p_k log softmax(logits)_k; each row must sum to 1 within
    `SOFT_SUM_TOLERANCE` (1e-2, as at ingest, which stores rows renormalised to sum 1).
    Normalisation: without class weights, the mean over rows. With class weights w (K,), every
    class term is scaled by w_k and the sum is divided by the total weight mass
    sum_i sum_k w_k p_ik. For hard (one-hot) targets that mass is sum_i w_{y_i}, which is PyTorch's
    weighted mean, so soft and hard agree on one-hot targets with or without weights. Weights are
    used as given (their scale cancels) and must be >= 0.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, K), got {tuple(logits.shape)}")
    batch, classes = logits.shape
    if target.dtype in (torch.int64, torch.int32):
        _check_hard_target(target, batch, classes)
        probs = F.one_hot(target.long(), classes).float()
    elif target.is_floating_point():
        _require_2d_pair(logits, target, "soft cross-entropy")
        _check_soft_target(target)
        probs = target.float()
    else:
        raise ValueError(f"target dtype {target.dtype} is neither int64 indices nor float probs")
    if batch == 0:
        return _empty_loss(logits)
    # Normalised weights give the same loss as raw ones (the scale cancels); this also validates.
    w = _normalised_weights(class_weights, classes, "class_weights", logits)
    weighted = probs * w  # (B, K)
    nll = -(weighted * F.log_softmax(logits.float(), dim=1)).sum()
    return nll / weighted.sum().clamp_min(torch.finfo(torch.float32).tiny)


def reconstruction_loss(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements of `recon` (B, D) and `target` (B, D)."""
    _require_2d_pair(recon, target, "reconstruction_loss")
    if recon.shape[0] == 0:
        return _empty_loss(recon)
    return F.mse_loss(recon.float(), target.float())


@dataclass(frozen=True)
class TaskObjective:
    """The prediction loss and output decoding of one task (categorical or attributes)."""

    kind: str
    num_outputs: int
    soft_labels: bool
    class_weights: tuple[float, ...] | None
    attribute_weights: tuple[float, ...] | None

    @classmethod
    def from_config(cls, task: TaskConfig) -> TaskObjective:
        def as_tuple(values: list[float] | None) -> tuple[float, ...] | None:
            return None if values is None else tuple(values)

        return cls(
            kind=task.kind,
            num_outputs=task.num_outputs,
            soft_labels=task.labels == "soft",
            class_weights=as_tuple(task.class_weights),
            attribute_weights=as_tuple(task.attribute_weights),
        )

    @property
    def target_field(self) -> str:
        """The Batch field this task learns from: label, soft_label or attributes."""
        if self.kind == "attributes":
            return "attributes"
        return "soft_label" if self.soft_labels else "label"

    def _target(self, batch: Batch) -> Tensor:
        target = getattr(batch, self.target_field)
        if target is None:
            raise ValueError(
                f"batch has no {self.target_field!r}, which a {self.kind} task "
                f"({'soft' if self.soft_labels else 'hard'} labels) needs"
            )
        return target

    def _check_outputs(self, outputs: Tensor, rows: int) -> None:
        if outputs.dim() != 2 or outputs.shape != (rows, self.num_outputs):
            raise ValueError(
                f"outputs must be (B, K)=({rows}, {self.num_outputs}), got {tuple(outputs.shape)}"
            )

    def prediction_loss(self, outputs: Tensor, batch_rows: Batch) -> Tensor:
        """Loss of `outputs` (B, K) against the labels of `batch_rows` (B rows)."""
        target = self._target(batch_rows).to(outputs.device)
        self._check_outputs(outputs, len(batch_rows))
        if len(batch_rows) == 0:
            return _empty_loss(outputs)
        if self.kind == "attributes":
            return ccc_loss(outputs, target, self.attribute_weights)
        return cross_entropy_loss(outputs, target, self.class_weights)

    def predict(self, outputs: Tensor) -> np.ndarray:
        """(B, K) class probabilities (softmax) for categorical tasks, raw values for attributes."""
        if outputs.dim() != 2 or outputs.shape[1] != self.num_outputs:
            raise ValueError(f"outputs must be (B, {self.num_outputs}), got {tuple(outputs.shape)}")
        values = outputs.detach().float()
        if self.kind == "categorical":
            values = torch.softmax(values, dim=1)
        return values.cpu().numpy()

    def metric_targets(self, batch: Batch) -> dict[str, np.ndarray]:
        """The labels `vavl.metrics.task_metrics` scores against: "label" (B,) or "attributes"."""
        if self.kind == "attributes":
            field, value = "attributes", batch.attributes
        else:
            field, value = "label", batch.label
        if value is None:
            raise ValueError(f"batch has no {field!r} to compute {self.kind} metrics against")
        return {field: value.detach().cpu().numpy()}
