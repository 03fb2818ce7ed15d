"""The lr schedule's shape, the plateau and early-stopping rules, selection smoothing, and the
schedule state a checkpoint carries across a resume."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.factories import tiny_config
from vavl.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from vavl.config import load_config
from vavl.schedule import (
    LrSchedule,
    accumulation_groups,
    batches_per_epoch,
    is_better,
    plateau_update,
    should_stop,
    smoothed,
    steps_per_epoch,
)


def schedule(kind: str = "cosine", *, warmup: float = 1.0, epochs: int = 5, steps: int = 10):
    optim = load_config(
        overrides=[
            f"optim.schedule={kind}",
            f"optim.warmup_epochs={warmup}",
            f"optim.epochs={epochs}",
            "optim.min_lr_ratio=0.1",
        ]
    ).optim
    return LrSchedule.from_config(optim, steps)


def test_steps_per_epoch_follow_ray_trains_equal_shards() -> None:
    assert steps_per_epoch(36, 2, 8) == 3  # 18 rows per rank: 8 + 8 + 2
    assert steps_per_epoch(37, 2, 8) == 3  # the odd row is not used (vavl.store.partition)
    assert steps_per_epoch(32, 2, 8) == 2
    assert steps_per_epoch(1, 2, 8) == 1  # never 0: the schedule divides by it
    with pytest.raises(ValueError, match="must be >= 1"):
        steps_per_epoch(10, 0, 8)


def test_accumulated_steps_take_k_batches_and_the_last_the_rest() -> None:
    assert batches_per_epoch(80, 2, 4) == 10
    assert steps_per_epoch(80, 2, 4, accumulate=4) == 3
    assert accumulation_groups(10, 4) == [4, 4, 2]
    assert accumulation_groups(8, 4) == [4, 4]
    assert accumulation_groups(3, 4) == [3]
    assert accumulation_groups(5, 1) == [1] * 5
    assert steps_per_epoch(80, 2, 4, accumulate=1) == steps_per_epoch(80, 2, 4)
    for batches in range(1, 12):
        for k in range(1, 5):
            groups = accumulation_groups(batches, k)
            assert sum(groups) == batches and len(groups) == math.ceil(batches / k)
    with pytest.raises(ValueError, match="must be >= 1"):
        steps_per_epoch(80, 2, 4, accumulate=0)


def test_warmup_rises_linearly_to_the_peak() -> None:
    lr = schedule(warmup=2.0, steps=5)
    assert lr.warmup_steps == 10 and lr.total_steps == 25
    rises = [lr.multiplier(step) for step in range(1, 11)]
    assert rises[0] == pytest.approx(0.1)  # ~0 at the start, not 0: the first step moves
    assert rises[-1] == pytest.approx(1.0)
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(rises))


def test_fractional_warmup_rounds_to_whole_steps() -> None:
    assert schedule(warmup=0.5, steps=7).warmup_steps == 4
    assert schedule(warmup=0.0).warmup_steps == 0


def test_cosine_decays_to_min_lr_ratio_at_the_last_step() -> None:
    lr = schedule("cosine", warmup=1.0, epochs=5, steps=10)
    after = [lr.multiplier(step) for step in range(10, 51)]
    assert after[0] == pytest.approx(1.0)
    assert all(b < a for a, b in itertools.pairwise(after))  # falls every step
    assert lr.multiplier(30) == pytest.approx(0.55)  # halfway: (1 + 0.1) / 2
    assert lr.multiplier(50) == pytest.approx(0.1)
    assert lr.multiplier(60) == pytest.approx(0.1)  # a step past the estimate stays at the floor


def test_cosine_without_warmup_starts_at_the_peak() -> None:
    lr = schedule("cosine", warmup=0.0, epochs=2, steps=10)
    assert lr.multiplier(1) == pytest.approx(0.5 * (1 + math.cos(math.pi / 20)) * 0.9 + 0.1)
    assert lr.multiplier(20) == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["constant", "plateau"])
def test_constant_and_plateau_stay_at_the_peak_after_warmup(kind: str) -> None:
    lr = schedule(kind, warmup=1.0, epochs=5, steps=10)
    assert lr.multiplier(5) == pytest.approx(0.5)
    assert {lr.multiplier(step) for step in range(10, 60)} == {1.0}


def test_steps_count_from_one() -> None:
    with pytest.raises(ValueError, match="counted from 1"):
        schedule().multiplier(0)


def test_plateau_halves_after_patience_epochs_without_improvement() -> None:
    scale, wait = 1.0, 0
    trace = []
    for improved in (True, False, False, False, False, True, False):
        scale, wait = plateau_update(scale, wait, improved=improved, patience=2, floor=0.05)
        trace.append((scale, wait))
    assert trace == [
        (1.0, 0),
        (1.0, 1),
        (0.5, 0),  # the second bad epoch in a row halves and restarts the count
        (0.5, 1),
        (0.25, 0),
        (0.25, 0),  # an improvement keeps the lr and restarts the count
        (0.25, 1),
    ]


def test_plateau_never_goes_below_its_floor() -> None:
    scale, wait = 0.08, 0
    scale, wait = plateau_update(scale, wait, improved=False, patience=1, floor=0.05)
    assert scale == 0.05
    scale, wait = plateau_update(scale, wait, improved=False, patience=1, floor=0.05)
    assert scale == 0.05


def test_smoothing_is_the_mean_of_the_last_k_epochs() -> None:
    scores = [0.2, 0.8, 0.5, 0.6]
    assert smoothed(scores, 1) == 0.6  # k=1: the raw metric
    assert smoothed(scores, 3) == pytest.approx((0.8 + 0.5 + 0.6) / 3)
    assert smoothed(scores[:2], 3) == pytest.approx(0.5)  # fewer epochs than k: all of them
    with pytest.raises(ValueError, match="smoothing needs"):
        smoothed([], 3)


def test_better_and_stop_rules() -> None:
    assert is_better(0.5, None, "max") and is_better(0.5, None, "min")
    assert is_better(0.6, 0.5, "max") and not is_better(0.5, 0.5, "max")
    assert is_better(0.4, 0.5, "min") and not is_better(0.6, 0.5, "min")
    assert not should_stop(5, 1, None)  # patience None: never
    assert not should_stop(3, 1, 3) and should_stop(4, 1, 3)


def _decide(cfg, scores: list[float]) -> TrainingState:
    """Rank 0's end-of-epoch decisions of the training loop over a run of raw dev scores."""
    from vavl.train.worker import _select

    state = TrainingState()
    for epoch, score in enumerate(scores, start=1):
        state.epoch = epoch
        metrics = {"epoch": float(epoch), cfg.train.selection_metric: score}
        _select(state, metrics, cfg)
        state.history.append(metrics)
        if state.stopped_early_at is not None:
            break
    return state


def test_the_loop_selects_on_the_smoothed_metric() -> None:
    cfg = tiny_config("train.selection_smoothing=2", "train.patience=null")
    state = _decide(cfg, [0.1, 0.9, 0.1, 0.6, 0.6])
    smoothed_scores = [h[cfg.train.selection_key] for h in state.history]
    assert smoothed_scores == pytest.approx([0.1, 0.5, 0.5, 0.35, 0.6])
    assert state.best_epoch == 5  # not the lucky epoch 2
    assert state.best_score == pytest.approx(0.6)


def test_the_loop_stops_early_and_halves_on_a_plateau() -> None:
    cfg = tiny_config(
        "optim.schedule=plateau", "optim.plateau_patience=2", "train.patience=3", "optim.epochs=10"
    )
    state = _decide(cfg, [0.5, 0.7, 0.6, 0.6, 0.6, 0.9, 0.9])
    assert state.best_epoch == 2 and state.stopped_early_at == 5  # 3 epochs without a better one
    assert state.lr_scale == 0.5 and state.plateau_wait == 1
    last = tiny_config("train.patience=1", "optim.epochs=2")
    assert _decide(last, [0.5, 0.4]).stopped_early_at is None  # the last epoch is no early stop


def test_best_checkpoint_prefers_the_earliest_of_tied_epochs() -> None:
    from vavl.train import best_checkpoint

    train = tiny_config("train.selection_smoothing=3").train
    key = train.selection_key

    def kept(*scores: tuple[int, float]) -> SimpleNamespace:
        return SimpleNamespace(
            best_checkpoints=[(f"ckpt{e}", {"epoch": float(e), key: v}) for e, v in scores]
        )

    assert best_checkpoint(kept((1, 0.5), (2, 0.7), (3, 0.7)), train)[0] == "ckpt2"
    assert best_checkpoint(kept((3, 0.7), (2, 0.7)), train)[0] == "ckpt2"  # list order is Ray's
    assert best_checkpoint(kept((1, math.nan), (2, 0.1)), train)[0] == "ckpt2"
    low = tiny_config("train.selection_mode=min").train
    assert best_checkpoint(kept((1, 0.5), (2, 0.3), (3, 0.4)), low)[0] == "ckpt2"
    assert best_checkpoint(SimpleNamespace(best_checkpoints=[("x", {"epoch": 1.0})]), train) is None


def test_schedule_state_survives_a_checkpoint(tmp_path: Path) -> None:
    from vavl.builders import build_model, build_optimizer

    cfg = tiny_config("optim.schedule=plateau")
    model = build_model(cfg)
    state = TrainingState(
        epoch=4, step=37, best_score=0.4, best_epoch=2, lr_scale=0.25, plateau_wait=1
    )
    state.stopped_early_at = 4
    save_checkpoint(
        tmp_path,
        model=model,
        optimizer=build_optimizer(cfg, model),
        scaler=None,
        state=state,
        config=cfg,
        meta={},
    )
    assert load_checkpoint(tmp_path).state == state


def test_checkpoints_from_before_the_schedule_load_with_its_defaults() -> None:
    old = {"epoch": 3, "step": 9, "best_score": 0.5, "best_epoch": 2, "history": []}
    state = TrainingState(**old)
    assert (state.lr_scale, state.plateau_wait, state.stopped_early_at) == (1.0, 0, None)
