"""The trainer's step: one batch per optimizer step, or several accumulated into one."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.factories import random_batch, tiny_config
from vavl.builders import build_model, build_optimizer
from vavl.objectives import TaskObjective
from vavl.phases import phase_losses
from vavl.train.step import StepSettings, backward_pass, optimizer_step, train_step


def _setup():
    cfg = tiny_config("model.dropout=0.0", "optim.grad_clip=null")
    torch.manual_seed(0)
    model = build_model(cfg)
    return cfg, model, build_optimizer(cfg, model), TaskObjective.from_config(cfg.task)


def _gradients(model, cfg, objective, batch) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    phase_losses(model, batch, objective, cfg.loss.reconstruction_weight).total.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_accumulated_batches_step_on_the_mean_of_their_gradients() -> None:
    cfg, model, optimizer, objective = _setup()
    settings = StepSettings("fp32", cfg.loss.reconstruction_weight, None)
    first = random_batch([True, True, False], [True, False, True], seed=1)
    second = random_batch([True, True, True], [False, True, True], seed=2)
    reference = copy.deepcopy(model)
    reference_optimizer = build_optimizer(cfg, reference)
    expected = [
        (a + b) / 2
        for a, b in zip(
            _gradients(reference, cfg, objective, first),
            _gradients(reference, cfg, objective, second),
            strict=True,
        )
    ]

    backward_pass(model, None, first, objective, settings, weight=0.5)
    backward_pass(model, None, second, objective, settings, weight=0.5)
    for param, grad in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, grad)

    for param, grad in zip(reference.parameters(), expected, strict=True):
        param.grad = grad.clone()
    reference_optimizer.step()
    optimizer_step(model, optimizer, None, None)
    for param, stepped in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(param, stepped)
        assert param.grad is None  # reset for the next step's batches


def test_a_one_batch_step_is_train_step() -> None:
    cfg, model, optimizer, objective = _setup()
    other = copy.deepcopy(model)
    other_optimizer = build_optimizer(cfg, other)
    settings = StepSettings("fp32", cfg.loss.reconstruction_weight, 1.0)
    batch = random_batch([True, False, True, True], [True, True, False, True], seed=3)
    losses = train_step(model, optimizer, None, batch, objective, settings)
    again = backward_pass(other, None, batch, objective, settings)
    optimizer_step(other, other_optimizer, None, 1.0)
    assert float(losses.total.detach()) == pytest.approx(float(again.total.detach()))
    for param, stepped in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(param, stepped, rtol=0, atol=0)
