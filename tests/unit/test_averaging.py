"""The weight average: its decay means the same time constant on any corpus size, it starts as
a copy of the weights, follows them by that decay, and is the model a checkpoint restores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.factories import save_model_checkpoint, stepped_model, tiny_config
from vavl.averaging import ema_decay, weight_average
from vavl.builders import build_optimizer
from vavl.checkpoint import TrainingState, load_checkpoint, restore_model, save_checkpoint


def test_decay_has_a_time_constant_of_ema_epochs() -> None:
    for steps in (13, 400):
        decay = ema_decay(2.0, steps)
        assert decay ** (2.0 * steps) == pytest.approx(math.exp(-1.0))
    with pytest.raises(ValueError, match="ema_epochs=0"):
        ema_decay(0.0, 10)
    assert weight_average(torch.nn.Linear(2, 2), None, 10) is None


def test_average_starts_as_a_copy_then_moves_by_the_decay() -> None:
    model = torch.nn.Linear(3, 1)
    averaged = weight_average(model, 1.0, 4)
    decay = ema_decay(1.0, 4)
    averaged.update_parameters(model)
    torch.testing.assert_close(averaged.module.weight, model.weight)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    averaged.update_parameters(model)
    expected = decay * before + (1 - decay) * model.weight.detach()
    torch.testing.assert_close(averaged.module.weight, expected)


def test_a_checkpoint_restores_its_average_and_keeps_the_raw_weights(tmp_path: Path) -> None:
    cfg = tiny_config()
    model = stepped_model(cfg)
    averaged = weight_average(model, 1.0, 5)
    averaged.update_parameters(model)
    raw = stepped_model(cfg, seed=3)  # other weights: training went on after the average
    save_checkpoint(
        tmp_path,
        model=raw,
        optimizer=build_optimizer(cfg, raw),
        scaler=None,
        state=TrainingState(epoch=1),
        config=cfg,
        meta={},
        averaged=averaged,
    )
    restored, _, _ = restore_model(tmp_path)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], value)
    loaded = load_checkpoint(tmp_path)
    torch.testing.assert_close(loaded.model["fusion_head.0.weight"], raw.fusion_head[0].weight)
    # A checkpoint without an average restores its raw weights.
    plain = save_model_checkpoint(tmp_path / "plain", raw, cfg)
    assert torch.equal(restore_model(plain)[0].fusion_head[0].weight, raw.fusion_head[0].weight)
