"""A sweep's console: one line per trial event instead of Ray Tune's status table.

    trial 1acf722d started: loss.residual_weight=0.554 loss.reconstruction_weight=2.69
    trial 1acf722d epoch 3: dev/av/macro_f1_smoothed 0.401
    trial 1acf722d stopped early at epoch 3 (ASHA)
    trial 0f688bdb finished after 8 epochs: dev/av/macro_f1_smoothed 0.789
    trial 9c1e2f00 failed: RuntimeError: ...

Plain lines, so they read the same on a terminal, in CI and in `ray job logs`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from vavl.train.worker import STOPPED_EARLY


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def print_line(text: str) -> None:
    print(text, flush=True)


class TrialLines(Callback):
    """Tune callback printing each trial's start, epochs, end, early stop and failure.

    Tune pickles its callbacks into the experiment state: `say` must pickle by reference (a
    module-level function; `builtins.print` does not once something has wrapped it)."""

    def __init__(self, metric: str, epochs: int, say: Callable[[str], None] = print_line) -> None:
        self._metric, self._epochs, self._say = metric, epochs, say
        self._last_epoch: dict[str, int] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        params = " ".join(f"{k}={_short(v)}" for k, v in (trial.config or {}).items())
        self._say(f"trial {trial.trial_id} started: {params}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any):
        epoch = int(result.get("epoch", 0))
        if epoch <= self._last_epoch.get(trial.trial_id, 0) or self._metric not in result:
            return  # a resumed trial re-reports its last epoch once
        self._last_epoch[trial.trial_id] = epoch
        self._say(
            f"trial {trial.trial_id} epoch {epoch}: {self._metric} {result[self._metric]:.3f}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = self._last_epoch.get(trial.trial_id, 0)
        score = (trial.last_result or {}).get(self._metric)
        shown = f": {self._metric} {score:.3f}" if isinstance(score, float) else ""
        if epoch < self._epochs and not (trial.last_result or {}).get(STOPPED_EARLY):
            self._say(f"trial {trial.trial_id} stopped early at epoch {epoch} (ASHA){shown}")
        else:
            self._say(f"trial {trial.trial_id} finished after {epoch} epochs{shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        path = getattr(trial, "error_file", None)
        text = Path(path).read_text() if path and Path(path).is_file() else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self._say(f"trial {trial.trial_id} failed: {lines[-1] if lines else 'see its log'}")
