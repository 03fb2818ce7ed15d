"""Learning-rate schedule, model selection and early stopping as pure functions of counters.

The training loop keeps no scheduler object: the lr of every optimizer step is recomputed from
the step counter and the plateau scale, both of which are in the checkpoint's `TrainingState`, so
a resumed run (or a restarted worker) continues the schedule exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vavl.config import OptimConfig

PLATEAU_FACTOR = 0.5  # the lr is halved on a plateau
Mode = Literal["max", "min"]


def batches_per_epoch(train_rows: int, world_size: int, batch_size: int) -> int:
    """Batches each rank reads per epoch, known before any data is read.

    Every rank reads `train_rows // world_size` rows (`vavl.store.partition`; the remainder
    rows are not used) in batches, the last one partial."""
    if world_size < 1 or batch_size < 1:
        raise ValueError(f"world_size={world_size} and batch_size={batch_size} must be >= 1")
    return max(1, math.ceil((train_rows // world_size) / batch_size))


def steps_per_epoch(train_rows: int, world_size: int, batch_size: int, accumulate: int = 1) -> int:
    """Optimizer steps each rank takes per epoch: one per `accumulate` batches, the last step
    taking the batches left (`accumulation_groups`)."""
    if accumulate < 1:
        raise ValueError(f"accumulate={accumulate} must be >= 1")
    return math.ceil(batches_per_epoch(train_rows, world_size, batch_size) / accumulate)


def accumulation_groups(batches: int, accumulate: int) -> list[int]:
    """How many batches each optimizer step of an epoch of `batches` batches takes: `accumulate`
    each, the last step the remainder. [4, 4, 2] for 10 batches in steps of 4."""
    if batches < 1 or accumulate < 1:
        raise ValueError(f"batches={batches} and accumulate={accumulate} must be >= 1")
    full, rest = divmod(batches, accumulate)
    return [accumulate] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class LrSchedule:
    """The lr multiplier of every optimizer step: linear warm-up, then cosine or constant.

    Steps are counted from 1 (the first step the optimizer takes). The plateau schedule is
    constant here; its halvings are a separate scale (`plateau_update`) decided at epoch end.
    """

    kind: Literal["cosine", "constant", "plateau"]
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float

    @classmethod
    def from_config(cls, optim: OptimConfig, steps_per_epoch: int) -> LrSchedule:
        total = optim.epochs * steps_per_epoch
        warmup = min(total, round(optim.warmup_epochs * steps_per_epoch))
        return cls(optim.schedule, warmup, total, optim.min_lr_ratio)

    def multiplier(self, step: int) -> float:
        if step < 1:
            raise ValueError(f"optimizer steps are counted from 1, got {step}")
        if step <= self.warmup_steps:
            # step/warmup reaches 1 on the last warm-up step; the first step's lr is small.
            return step / self.warmup_steps
        if self.kind != "cosine":
            return 1.0
        decay_steps = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


def plateau_update(
    scale: float, wait: int, *, improved: bool, patience: int, floor: float
) -> tuple[float, int]:
    """The plateau's (lr scale, epochs without improvement) after one more epoch.

    The lr halves once `patience` epochs in a row brought no improvement, then the count starts
    again (so it halves at most every `patience` epochs); it never drops below `floor`."""
    if improved:
        return scale, 0
    wait += 1
    if wait < patience:
        return scale, wait
    return max(floor, scale * PLATEAU_FACTOR), 0


def smoothed(values: Sequence[float], window: int) -> float:
    """Mean of the last `window` values (fewer at the start of a run): a selection score that one
    lucky epoch on a small dev split cannot win alone."""
    if not values or window < 1:
        raise ValueError(f"smoothing needs >= 1 value and window >= 1, got {len(values)}, {window}")
    recent = values[-window:]
    return sum(recent) / len(recent)


def is_better(score: float, best: float | None, mode: Mode) -> bool:
    """Strictly better than the best so far (any score beats no score)."""
    if best is None:
        return True
    return score > best if mode == "max" else score < best


def should_stop(epoch: int, best_epoch: int | None, patience: int | None) -> bool:
    """Early stopping: `patience` epochs have passed since the best one (None: never)."""
    if patience is None or best_epoch is None:
        return False
    return epoch - best_epoch >= patience
