"""A sweep's console, instead of Ray Tune's status table.

Off a terminal (CI, `ray job logs`, a file): one plain line per trial event.

    trial 1acf722d started: loss.residual_weight=0.554 loss.reconstruction_weight=2.69
    trial 1acf722d epoch 3: dev/mean/macro_f1_smoothed 0.401
    trial 1acf722d stopped early at epoch 3 (ASHA)
    trial 0f688bdb finished after 8 epochs: dev/mean/macro_f1_smoothed 0.789
    trial 9c1e2f00 failed: RuntimeError: ...

On a terminal: the same start, end and failure lines, and under them a live view with one row
per running trial (id, epoch k/N, latest selection metric, time running, params), redrawn in
place as results arrive and every second; it replaces the per-epoch lines.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from vavl.console import duration
from vavl.train.worker import STOPPED_EARLY

UP = "\x1b[{}F\x1b[J"  # to the start of the line n lines up, then clear to the end of the screen
REDRAW_S = 1.0  # the live view's clock column moves at most this often


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def stdout() -> TextIO:
    return sys.stdout


class TrialLines(Callback):
    """Tune callback printing each trial's start, epochs, end, early stop and failure, with a
    live view of the running trials when `stream()` is a terminal.

    Tune pickles its callbacks into the experiment state: `stream` and `clock` must pickle by
    reference (module-level functions), and what is on screen is not part of the state."""

    def __init__(
        self,
        metric: str,
        epochs: int,
        stream: Callable[[], TextIO] = stdout,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metric, self._epochs, self._stream, self._clock = metric, epochs, stream, clock
        self._last_epoch: dict[str, int] = {}
        self._running: dict[str, dict[str, Any]] = {}  # trial id -> its row's values
        self._live: bool | None = None  # decided at the first output
        self._drawn = 0  # rows of the live view on screen
        self._drawn_at = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_live": None, "_drawn": 0}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        config = trial.config or {}
        params = " ".join(f"{k}={_short(v)}" for k, v in config.items())
        epoch = self._last_epoch.get(trial.trial_id, 0)
        self._running[trial.trial_id] = dict(
            params=params, epoch=epoch, score=None, started=self._clock()
        )
        self._say(f"trial {trial.trial_id} started: {params}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any):
        epoch = int(result.get("epoch", 0))
        if epoch <= self._last_epoch.get(trial.trial_id, 0) or self._metric not in result:
            return  # a resumed trial re-reports its last epoch once
        self._last_epoch[trial.trial_id] = epoch
        score = result[self._metric]
        row = self._running.get(trial.trial_id)
        if row is not None:
            row.update(epoch=epoch, score=score)
        if self._is_live():
            self._redraw()
        else:
            self._say(f"trial {trial.trial_id} epoch {epoch}: {self._metric} {score:.3f}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.pop(trial.trial_id, None)
        epoch = self._last_epoch.get(trial.trial_id, 0)
        score = (trial.last_result or {}).get(self._metric)
        shown = f": {self._metric} {score:.3f}" if isinstance(score, float) else ""
        if epoch < self._epochs and not (trial.last_result or {}).get(STOPPED_EARLY):
            self._say(f"trial {trial.trial_id} stopped early at epoch {epoch} (ASHA){shown}")
        else:
            self._say(f"trial {trial.trial_id} finished after {epoch} epochs{shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.pop(trial.trial_id, None)
        path = getattr(trial, "error_file", None)
        text = Path(path).read_text() if path and Path(path).is_file() else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self._say(f"trial {trial.trial_id} failed: {lines[-1] if lines else 'see its log'}")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._running and self._is_live() and self._clock() - self._drawn_at >= REDRAW_S:
            self._redraw()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._erase()
        self._stream().flush()

    def _is_live(self) -> bool:
        if self._live is None:
            self._live = self._stream().isatty()
        return self._live

    def _say(self, line: str) -> None:
        """A permanent line; on a terminal above the live view, which is drawn again under it."""
        out = self._stream()
        if self._is_live():
            self._erase()
            out.write(line + "\n")
            self._redraw()
        else:
            out.write(line + "\n")
            out.flush()

    def _erase(self) -> None:
        if self._drawn:
            self._stream().write(UP.format(self._drawn))
            self._drawn = 0

    def _redraw(self) -> None:
        out = self._stream()
        self._erase()
        width = shutil.get_terminal_size((100, 24)).columns - 1  # no wrapped row: rows count
        now = self._clock()
        for trial_id, row in self._running.items():
            out.write(self._row(trial_id, row, now)[:width] + "\n")
        self._drawn, self._drawn_at = len(self._running), now
        out.flush()

    def _row(self, trial_id: str, row: dict[str, Any], now: float) -> str:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        return (
            f"  {trial_id}  epoch {row['epoch']}/{self._epochs}  {self._metric} {score}"
            f"  {duration(now - row['started'])}  {row['params']}"
        )
