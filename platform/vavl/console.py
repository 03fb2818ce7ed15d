"""What users read: progress inside and at the end of each epoch, closing summary tables."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from vavl.config import CONDITIONS, TaskConfig


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (numbers to 4 decimals)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(str(header)), *(len(row[i]) for row in cells)) if cells else len(str(header))
        for i, header in enumerate(headers)
    ]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def epoch_line(metrics: Mapping[str, Any], epochs: int, selection_metric: str) -> str:
    """One line per epoch: loss and lr, the selection metric per condition, best epoch so far."""
    metric = selection_metric.rsplit("/", 1)[-1]
    per_condition = "  ".join(
        f"{c} {metrics[f'dev/{c}/{metric}']:.3f}"
        for c in CONDITIONS
        if f"dev/{c}/{metric}" in metrics
    )
    lr = f"  lr {metrics['train/lr']:.2e}" if "train/lr" in metrics else ""
    return (
        f"epoch {int(metrics['epoch']):>3}/{epochs}"
        f"  train loss {metrics.get('train/loss', 0.0):.4f}{lr}"
        f"  | dev {metric}: {per_condition}  | best epoch {metrics.get('best_epoch')}"
        f"  ({metrics.get('time/epoch_s', 0.0):.1f} s)"
    )


def duration(seconds: float) -> str:
    """A short human duration: 42s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def step_line(update: Mapping[str, Any], epochs: int) -> str:
    """Progress inside an epoch: where it is, the running train loss, speed and time left."""
    done, total = int(update["step"]), int(update["steps"])
    rate = float(update["samples_per_s"])
    eta = f"  eta {duration(float(update['eta_s']))}" if done < total else ""
    return (
        f"epoch {int(update['epoch']):>3}/{epochs}  step {done}/{total}"
        f"  train loss {float(update['loss']):.4f}  {rate:.1f} samples/s{eta}"
    )


class ProgressPrinter:
    """Writes the trainer's progress: epoch lines always; step updates, on a terminal, as one
    line rewritten in place (cleared before the next epoch line), elsewhere as a plain line at
    most every `every_s` seconds. `every_s` None: no step updates."""

    CLEAR = "\r\x1b[K"

    def __init__(
        self,
        stream: TextIO,
        *,
        epochs: int,
        selection_metric: str,
        every_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.epochs, self.metric = stream, epochs, selection_metric
        self.every_s, self.clock = every_s, clock
        self.live = stream.isatty()
        self._pending = False  # a live line is on screen
        self._last_plain = clock()  # the first plain step line comes every_s after the start

    def show(self, item: Mapping[str, Any]) -> None:
        """One item from rank 0: a note (has "note"), a step update (has "steps") or an
        epoch's metrics."""
        if "steps" in item:
            self._step(item)
            return
        self._clear()
        if "note" in item:
            self.stream.write(f"note: {item['note']}\n")
        else:
            self.stream.write(epoch_line(item, self.epochs, self.metric) + "\n")
        self.stream.flush()
        self._last_plain = self.clock()

    def close(self) -> None:
        self._clear()

    def _step(self, item: Mapping[str, Any]) -> None:
        if self.every_s is None:
            return
        line = step_line(item, self.epochs)
        if self.live:
            self.stream.write(self.CLEAR + line)
            self._pending = True
        else:
            now = self.clock()
            if now - self._last_plain < self.every_s:
                return
            self.stream.write(line + "\n")
            self._last_plain = now
        self.stream.flush()

    def _clear(self) -> None:
        if self._pending:
            self.stream.write(self.CLEAR)
            self._pending = False


def metrics_by_condition(
    metrics: Mapping[str, float], split: str, names: Sequence[str]
) -> list[list[Any]]:
    """Rows of (split, condition, metric values...) for a summary table."""
    rows = []
    for condition in CONDITIONS:
        values = [metrics.get(f"{split}/{condition}/{name}") for name in names]
        if any(v is not None for v in values):
            rows.append([split, condition, *values])
    return rows


def summary_metric_names(task: TaskConfig) -> list[str]:
    """The metrics a summary table shows for this task."""
    if task.kind == "categorical":
        return ["accuracy", "macro_f1", "uar"]
    return [*(f"ccc_{name}" for name in task.attributes), "ccc_mean"]
