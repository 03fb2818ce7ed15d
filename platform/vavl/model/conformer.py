"""A conformer block (Gulati et al., 2020) that padded frames cannot influence.

Shapes follow `vavl.model`: x (B, T, d), mask (B, T) bool True on real frames.

Where padding could leak in a conformer, and what stops it here:
- attention: a boolean mask (B, 1, 1, T), True on real frames, gives pads zero weight as keys;
- the depthwise convolution: pads are zeroed right before it, so 'same' padding beyond a short
  utterance's end sees the zeros it would see if the utterance were alone;
- normalisation: LayerNorm over channels, per frame (BatchNorm would pool statistics over pads);
- anything a caller left in the pads (even NaN or inf): zeroed on entry to every block, and
  every block's output is zero on pads, so the next block starts clean.

Positional information: none is added. The depthwise convolution (kernel 31 at paper size, i.e.
0.6 s of audio at 50 fps) makes every block order-sensitive and gives relative position, which is
what the conformer's own relative encoding is for; the task pools over time, so absolute position
carries little, and an absolute encoding would mean different things at 50 fps (audio) and 30 fps
(video) inside the one shared block. The inputs (wav2vec2, per-face embeddings) already carry
their own context.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vavl.model.dropout import Dropout, dropout


def zero_pads(x: Tensor, mask: Tensor) -> Tensor:
    """x (B, T, d) with every frame where mask (B, T) is False set to 0 (NaN and inf too)."""
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


def _check_width(d_model: int, dropout: float) -> None:
    if d_model <= 0:
        raise ValueError(f"d_model must be > 0, got {d_model}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class FeedForward(nn.Module):
    """Pre-norm position-wise MLP: (B, T, d) -> (B, T, d); frames never mix."""

    def __init__(self, *, d_model: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        _check_width(d_model, dropout)
        if ff_mult <= 0:
            raise ValueError(f"ff_mult must be > 0, got {ff_mult}")
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, ff_mult * d_model),
            nn.SiLU(),
            Dropout(dropout),
            nn.Linear(ff_mult * d_model, d_model),
            Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d) -> (B, T, d)."""
        return self.net(x)


def attend_with_dropout(q: Tensor, k: Tensor, v: Tensor, keys: Tensor, p: float) -> Tensor:
    """softmax(q k^T / sqrt(d_h)) v with keys False masked out and the weights dropped out.

    q, k, v (B, H, T, d_h); keys (B, 1, 1, T) bool, >= 1 True per row -> (B, H, T, d_h).
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    weights = scores.masked_fill(~keys, float("-inf")).softmax(dim=-1)
    return dropout(weights, p, training=True) @ v


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention along TIME, pads masked out as keys.

    The weights live in an nn.MultiheadAttention (`attn.in_proj_weight`, `attn.in_proj_bias`,
    `attn.out_proj`), so checkpoints from when its forward ran load unchanged; the forward calls
    the fused scaled_dot_product_attention directly, which computes the same thing with fewer
    dispatches than nn.MultiheadAttention's general path (its checks, mask merging, reshapes).
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        _check_width(d_model, dropout)
        if n_heads <= 0 or d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads} (> 0)")
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T) with >= 1 real frame per row -> (B, T, d)."""
        batch, frames, d_model = x.shape
        qkv = F.linear(self.norm(x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        # (B, T, 3d) -> (B, T, 3, H, d/H) -> (3, B, H, T, d/H): attention runs over time, per
        # utterance and head, never across utterances.
        qkv = qkv.view(batch, frames, 3, self.n_heads, d_model // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        keys = mask[:, None, None, :]  # (B, 1, 1, T): every query may attend to the real frames
        drop = self.attn.dropout if self.training else 0.0  # on the attention probabilities
        if drop > 0.0 and x.device.type == "cpu":
            # With dropout, torch's CPU attention falls back to the explicit math anyway, with
            # torch's costlier mask; on CUDA its fused kernels drop out cheaply.
            h = attend_with_dropout(q, k, v, keys, drop)
        else:
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=drop)
        h = h.transpose(1, 2).reshape(batch, frames, d_model)  # (B, H, T, d/H) -> (B, T, d)
        return self.dropout(self.attn.out_proj(h))


class ConvModule(nn.Module):
    """Pointwise -> GLU -> depthwise conv over time -> LayerNorm -> SiLU -> pointwise."""

    def __init__(self, *, d_model: int, kernel: int, dropout: float) -> None:
        super().__init__()
        _check_width(d_model, dropout)
        if kernel <= 0 or kernel % 2 == 0:
            raise ValueError(f"conv kernel must be odd and > 0 for 'same' padding, got {kernel}")
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.conv_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T) -> (B, T, d)."""
        h = F.glu(self.pointwise_in(self.norm(x)), dim=-1)  # (B, T, 2d) -> (B, T, d)
        h = zero_pads(h, mask)
        # (B, T, d) -> (B, d, T): Conv1d slides over the last axis, which must be time.
        h = self.depthwise(h.transpose(1, 2))
        h = h.transpose(1, 2)  # back to (B, T, d)
        h = F.silu(self.conv_norm(h))
        return self.dropout(self.pointwise_out(h))


class ConformerBlock(nn.Module):
    """x + FF/2, x + MHSA, x + Conv, x + FF/2, LayerNorm; (B, T, d) -> (B, T, d), zero on pads."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        ff_mult: int,
        conv_kernel: int,
        dropout: float,
        checkpointed: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.ff_in = FeedForward(d_model=d_model, ff_mult=ff_mult, dropout=dropout)
        self.attn = SelfAttention(d_model=d_model, n_heads=n_heads, dropout=dropout)
        self.conv = ConvModule(d_model=d_model, kernel=conv_kernel, dropout=dropout)
        self.ff_out = FeedForward(d_model=d_model, ff_mult=ff_mult, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.checkpointed = checkpointed

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, d) float, mask (B, T) bool True on real frames, >= 1 per row -> (B, T, d).

        An all-pad row would make attention's softmax NaN: callers drop absent rows first.
        With `checkpointed` set, training keeps only the block's input for the backward pass
        and recomputes the rest there (same gradients, dropout masks replayed).
        """
        if self.checkpointed and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, mask, use_reentrant=False)
        return self._forward(x, mask)

    def _forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = zero_pads(x, mask)
        x = x + 0.5 * self.ff_in(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff_out(x)
        return zero_pads(self.norm(x), mask)
