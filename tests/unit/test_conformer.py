"""The conformer block: padding invariance, order sensitivity, batch independence, errors, and
the attention's equality with nn.MultiheadAttention, which it replaced."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vavl.config import ModelConfig
from vavl.model import VAVL, ConformerBlock, ConvModule, SelfAttention, zero_pads

D_MODEL = 32
ATOL = 1e-5


def _block(seed: int = 0, kernel: int = 5) -> ConformerBlock:
    torch.manual_seed(seed)
    return ConformerBlock(d_model=D_MODEL, n_heads=2, ff_mult=2, conv_kernel=kernel, dropout=0.1)


def _padded(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (B, T, d) frames with a (B, T) mask; pads hold zeros."""
    gen = torch.Generator().manual_seed(seed)
    t_max = max(lengths)
    mask = torch.arange(t_max)[None, :] < torch.tensor(lengths)[:, None]
    x = torch.randn(len(lengths), t_max, D_MODEL, generator=gen)
    return zero_pads(x, mask), mask


@torch.no_grad()
def test_utterance_alone_equals_utterance_padded_in_batch() -> None:
    block = _block().eval()
    lengths = [7, 12, 3]
    x, mask = _padded(lengths)
    batched = block(x, mask)
    for row, length in enumerate(lengths):
        alone = block(x[row : row + 1, :length], mask[row : row + 1, :length])
        torch.testing.assert_close(batched[row, :length], alone[0], atol=ATOL, rtol=0)
        assert torch.all(batched[row, length:] == 0), f"row {row}: pad outputs not zeroed"


@torch.no_grad()
def test_values_in_padded_frames_change_nothing() -> None:
    block = _block().eval()
    x, mask = _padded([9, 4, 6])
    clean = block(x, mask)
    dirty = x.clone()
    dirty[~mask] = 1e4 * torch.randn(int((~mask).sum()), D_MODEL)
    dirty[1, -1] = float("nan")
    dirty[2, -1] = float("inf")
    torch.testing.assert_close(block(dirty, mask), clean, atol=0, rtol=0)


@torch.no_grad()
def test_shuffling_frames_in_time_changes_the_output() -> None:
    # Attention alone is permutation-equivariant; the depthwise conv along time must break that.
    block = _block().eval()
    x, mask = _padded([10])
    perm = torch.tensor([3, 7, 0, 9, 1, 5, 2, 8, 4, 6])
    out_of_shuffled = block(x[:, perm], mask)
    shuffled_out = block(x, mask)[:, perm]
    assert (out_of_shuffled - shuffled_out).abs().max() > 1e-2


@torch.no_grad()
def test_an_utterance_does_not_depend_on_its_batch_neighbours() -> None:
    block = _block().eval()
    x, mask = _padded([8, 8, 8])
    changed = x.clone()
    changed[1:] = torch.randn(2, 8, D_MODEL) * 3.0
    out, out_changed = block(x, mask), block(changed, mask)
    torch.testing.assert_close(out[0], out_changed[0], atol=ATOL, rtol=0)
    assert (out[1:] - out_changed[1:]).abs().max() > 1e-2


@torch.no_grad()
def test_conv_module_sees_zeros_beyond_a_short_utterance() -> None:
    # The conv module alone (no entry zeroing): garbage after the end must not reach real frames.
    torch.manual_seed(0)
    conv = ConvModule(d_model=D_MODEL, kernel=7, dropout=0.0).eval()
    x, mask = _padded([5, 11])
    dirty = x.clone()
    dirty[0, 5:] = 50.0
    torch.testing.assert_close(conv(dirty, mask)[0, :5], conv(x, mask)[0, :5], atol=ATOL, rtol=0)


@pytest.mark.parametrize("training", [False, True])  # training: the explicit path with dropout
def test_attention_gradient_does_not_reach_padded_frames(training: bool) -> None:
    torch.manual_seed(0)
    attn = SelfAttention(d_model=D_MODEL, n_heads=2, dropout=0.3 if training else 0.0)
    attn.train(training)
    x, mask = _padded([4, 9])
    x.requires_grad_(True)
    attn(x, mask)[0, :4].sum().backward()
    assert x.grad is not None
    assert torch.all(x.grad[0, 4:] == 0)
    assert x.grad[0, :4].abs().sum() > 0


def test_train_mode_dropout_is_active_and_eval_is_deterministic() -> None:
    block = _block()
    x, mask = _padded([6, 6])
    block.train()
    assert not torch.equal(block(x, mask), block(x, mask))
    block.eval()
    assert torch.equal(block(x, mask), block(x, mask))


def _multihead_forward(self: SelfAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SelfAttention's forward before scaled_dot_product_attention: nn.MultiheadAttention's own,
    kept here as the reference the new path must equal."""
    h = self.norm(x)
    h, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
    return self.dropout(h)


@pytest.mark.parametrize("grad", [False, True])  # no grad: nn.MultiheadAttention's fast path
def test_attention_equals_multihead_attention_on_rows_of_different_lengths(grad: bool) -> None:
    torch.manual_seed(0)
    attn = SelfAttention(d_model=D_MODEL, n_heads=4, dropout=0.1).eval()
    x, mask = _padded([7, 3, 12, 1])
    with torch.set_grad_enabled(grad):
        want = _multihead_forward(attn, x, mask)
        got = attn(x, mask)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-5)


def _vavl_loss_and_grads(
    model: VAVL, batch: dict[str, torch.Tensor], labels: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The trainer's three phases on one batch (branch losses with reconstruction, fusion on
    detached representations), backward, and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    out = model(**batch, detach_fusion_inputs=True)
    loss = F.cross_entropy(out.predictions.fusion, labels)
    for cond in ("audio", "visual"):
        loss = loss + F.cross_entropy(getattr(out.predictions, cond), labels)
        loss = loss + 2.0 * F.mse_loss(
            getattr(out.reconstructions, cond), getattr(out.recon_targets, cond)
        )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_a_vavl_training_step_equals_the_multihead_attention_one(monkeypatch) -> None:
    # Dropout 0: the two paths draw dropout masks differently; everything else is the step's.
    config = ModelConfig(
        audio_dim=20, visual_dim=24, d_model=D_MODEL, n_heads=4, ff_mult=2, conv_kernel=5,
        dropout=0.0, branch_layers=2, shared_layers=2, head_hidden=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = VAVL(config, num_outputs=3).train()
    gen = torch.Generator().manual_seed(3)
    a_mask = torch.arange(11)[None, :] < torch.tensor([11, 4, 7, 0])[:, None]  # row 3: no audio
    v_mask = torch.arange(9)[None, :] < torch.tensor([2, 9, 5, 6])[:, None]
    batch = {
        "audio": zero_pads(torch.randn(4, 11, 20, generator=gen), a_mask),
        "audio_mask": a_mask,
        "visual": zero_pads(torch.randn(4, 9, 24, generator=gen), v_mask),
        "visual_mask": v_mask,
    }
    labels = torch.tensor([0, 2, 1, 1])
    loss, grads = _vavl_loss_and_grads(model, batch, labels)
    monkeypatch.setattr(SelfAttention, "forward", _multihead_forward)
    want_loss, want_grads = _vavl_loss_and_grads(model, batch, labels)
    torch.testing.assert_close(loss, want_loss, atol=ATOL, rtol=1e-5)
    assert grads.keys() == want_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], atol=ATOL, rtol=1e-4, msg=name)


def test_attention_dropout_acts_on_the_probabilities_in_training_only() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(d_model=D_MODEL, n_heads=2, dropout=0.5)
    attn.dropout.p = 0.0  # leave only the dropout on the attention probabilities
    x, mask = _padded([6, 4])
    attn.train()
    assert not torch.equal(attn(x, mask), attn(x, mask))
    attn.eval()
    torch.testing.assert_close(attn(x, mask), _multihead_forward(attn, x, mask), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_heads": 3}, ["d_model=32", "n_heads=3"]),
        ({"conv_kernel": 4}, ["odd", "4"]),
        ({"dropout": 1.0}, ["dropout", "1.0"]),
        ({"ff_mult": 0}, ["ff_mult", "0"]),
    ],
)
def test_bad_sizes_are_rejected_with_their_values(kwargs: dict, words: list[str]) -> None:
    sizes = {"d_model": D_MODEL, "n_heads": 2, "ff_mult": 2, "conv_kernel": 5, "dropout": 0.1}
    with pytest.raises(ValueError) as err:
        ConformerBlock(**(sizes | kwargs))
    for word in words:
        assert word in str(err.value)
