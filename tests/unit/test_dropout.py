"""The CPU dropout: its drop rate, scaling, gradient and reproducibility, and the explicit
attention that uses it in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vavl.model.conformer import attend_with_dropout
from vavl.model.dropout import Dropout, dropout

ELEMENTS = 400_000  # a drop share's standard error at p = 0.5: 0.0008


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_elements_drop_at_rate_p_and_the_kept_ones_scale_by_one_over_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    y = dropout(torch.ones(ELEMENTS), p, training=True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.005
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1.0 / (1.0 - p)))


def test_every_lane_of_a_random_word_drops_at_the_same_rate() -> None:
    # Four 16-bit lanes come from one 64-bit draw; a draw that left its sign bit at 0 would never
    # drop the top lane at p = 0.5.
    torch.manual_seed(0)
    y = dropout(torch.ones(ELEMENTS, 4), 0.5, training=True)
    for lane, share in enumerate((y == 0).float().mean(dim=0).tolist()):
        assert abs(share - 0.5) < 0.01, f"lane {lane}: {share:.3f}"


def test_drops_are_independent_of_position_and_not_repeated_across_a_tensor() -> None:
    torch.manual_seed(0)
    dropped = dropout(torch.ones(2, ELEMENTS // 2), 0.5, training=True) == 0
    assert not torch.equal(dropped[0], dropped[1])
    both = (dropped[0] & dropped[1]).float().mean().item()
    assert abs(both - 0.25) < 0.01


def test_gradient_is_the_same_mask_and_scale_as_the_output() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 50, 16, requires_grad=True)
    y = dropout(x, 0.3, training=True)
    grad = torch.randn_like(y)
    y.backward(grad)
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad, torch.where(kept, grad / 0.7, 0.0))
    torch.testing.assert_close(y.detach(), torch.where(kept, x.detach() / 0.7, 0.0))


def test_the_same_seed_draws_the_same_mask_and_another_seed_another() -> None:
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    first = dropout(x, 0.2, training=True)
    torch.manual_seed(3)
    again = dropout(x, 0.2, training=True)
    torch.manual_seed(4)
    other = dropout(x, 0.2, training=True)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_output_keeps_shape_and_dtype_of_odd_sized_inputs(dtype: torch.dtype) -> None:
    x = torch.ones(3, 7, 5, dtype=dtype)  # 105 elements: not a multiple of a word's four lanes
    y = dropout(x, 0.5, training=True)
    assert y.shape == x.shape and y.dtype == dtype
    assert dropout(torch.ones(0, 4), 0.5, training=True).shape == (0, 4)


def test_eval_and_p_zero_return_the_input_unchanged() -> None:
    x = torch.randn(4, 4)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert "p=0.5" in repr(module)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_a_probability_outside_zero_to_one_is_rejected_with_its_value(p: float) -> None:
    with pytest.raises(ValueError, match=str(p)):
        dropout(torch.ones(2), p, training=True)
    with pytest.raises(ValueError, match=str(p)):
        Dropout(p)


def test_explicit_attention_without_dropout_equals_the_fused_one_and_its_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 9, 8, generator=gen, requires_grad=True) for _ in range(3))
    keys = (torch.arange(9)[None, :] < torch.tensor([9, 4, 1])[:, None])[:, None, None, :]
    grad = torch.randn(3, 2, 9, 8, generator=gen)
    got = attend_with_dropout(q, k, v, keys, 0.0)
    got_grads = torch.autograd.grad(got, (q, k, v), grad)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
    want_grads = torch.autograd.grad(want, (q, k, v), grad)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for name, g, w in zip("qkv", got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5, msg=name)


def test_explicit_attention_with_dropout_gives_padded_keys_no_weight() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 6, 4), torch.randn(2, 1, 6, 4)
    v = torch.randn(2, 1, 6, 4, requires_grad=True)
    keys = (torch.arange(6)[None, :] < torch.tensor([6, 3])[:, None])[:, None, None, :]
    out = attend_with_dropout(q, k, v, keys, 0.5)
    (grad_v,) = torch.autograd.grad(out.sum(), v)
    assert torch.all(grad_v[1, :, 3:] == 0)  # row 1's pads are never attended to
    assert torch.any(grad_v[1, :, :3] != 0)
