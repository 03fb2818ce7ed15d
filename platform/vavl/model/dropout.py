"""Dropout whose CPU mask costs a quarter of the random draws of torch's.

On CPU, `torch.nn.functional.dropout` draws one random number per element through `bernoulli_`,
and at the paper preset's sizes those draws took about a quarter of a training step
(`bench/model.py`, BENCHMARKS.md). Here one 64-bit draw makes four 16-bit uniform integers, and
an element drops where its integer falls below round(p * 2**16): a drop probability within
2**-17 of p (0.1 drops with probability 0.100006). Masks come from torch's global CPU generator, so
`torch.manual_seed` reproduces them and activation checkpointing replays them. The backward keeps
the boolean mask (1 byte per element), as torch's own dropout does.

On other devices (CUDA), torch's fused dropout is already cheap and is used unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 2**16  # distinct 16-bit values: the drop probability's resolution
_INT64_MIN = torch.iinfo(torch.int64).min


def _drop_mask(shape: torch.Size, p: float, device: torch.device) -> Tensor:
    """Bool tensor of `shape`, True with probability round(p * 2**16) / 2**16 per element."""
    count = shape.numel()
    # random_(min, None) draws the full 64-bit range; each word is four uniform int16 lanes.
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device)
    words.random_(_INT64_MIN, None)
    lanes = words.view(torch.int16)[:count].view(shape)
    return lanes < (-_LEVELS // 2 + round(p * _LEVELS))


class _MaskedScale(torch.autograd.Function):
    """y = x * scale where keep, 0 where drop; the gradient is the same map of dy."""

    @staticmethod
    def forward(ctx, x: Tensor, drop: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(drop)
        ctx.scale = scale
        return x.masked_fill(drop, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (drop,) = ctx.saved_tensors
        return grad.masked_fill(drop, 0.0).mul_(ctx.scale), None, None


def _check_probability(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout: in training, each element is 0 with probability p, else x / (1 - p)."""
    _check_probability(p)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return _MaskedScale.apply(x, _drop_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class Dropout(nn.Module):
    """`torch.nn.Dropout` with the cheaper CPU mask of `dropout`; no parameters or buffers."""

    def __init__(self, p: float) -> None:
        super().__init__()
        _check_probability(p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x (...) -> (...), same shape and dtype."""
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
