"""What users read: progress inside and at the end of each epoch, counts of the other long steps
(ingest, evaluation, batch prediction), closing summary tables."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO, TypeVar

from vavl.config import CONDITIONS, TaskConfig

T = TypeVar("T")


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


class StatusLine:
    """A transient status line under permanent lines: on a terminal one line rewritten in place
    (cleared before the next permanent line), elsewhere a plain line at most every `every_s`
    seconds (CI logs, `ray job logs`). `every_s` None: no status at all."""

    CLEAR = "\r\x1b[K"

    def __init__(
        self,
        stream: TextIO,
        *,
        every_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream, self.every_s, self.clock = stream, every_s, clock
        self.live = stream.isatty()
        self._pending = False  # a live line is on screen
        self._last_plain = clock()  # the first plain line comes every_s after the start

    def update(self, text: str) -> None:
        """Show `text` as the current status (live, or plain if `every_s` has passed)."""
        if self.every_s is None:
            return
        if self.live:
            self.stream.write(self.CLEAR + text)
            self._pending = True
        else:
            now = self.clock()
            if now - self._last_plain < self.every_s:
                return
            self.stream.write(text + "\n")
            self._last_plain = now
        self.stream.flush()

    def write(self, text: str) -> None:
        """A permanent line; the next plain status comes `every_s` after it."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self.restart()

    def restart(self) -> None:
        self._last_plain = self.clock()

    def clear(self) -> None:
        if self._pending:
            self.stream.write(self.CLEAR)
            self.stream.flush()
            self._pending = False


class ProgressPrinter:
    """Writes the trainer's progress: epoch lines always; step updates as a `StatusLine` (live
    on a terminal, plain every `every_s` seconds elsewhere). `every_s` None: no step updates."""

    CLEAR = StatusLine.CLEAR

    def __init__(
        self,
        stream: TextIO,
        *,
        epochs: int,
        selection_metric: str,
        every_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.epochs, self.metric = epochs, selection_metric
        self.status = StatusLine(stream, every_s=every_s, clock=clock)

    def show(self, item: Mapping[str, Any]) -> None:
        """One item from rank 0: a note (has "note"), a step update (has "steps") or an
        epoch's metrics."""
        if "steps" in item:
            self.status.update(step_line(item, self.epochs))
        elif "note" in item:
            self.status.write(f"note: {item['note']}")
        else:
            self.status.write(epoch_line(item, self.epochs, self.metric))

    def close(self) -> None:
        self.status.clear()


PLAIN_EVERY_S = 30.0  # plain progress lines of ingest, evaluation and prediction off a terminal


def count_line(what: str, done: int, total: int | None, unit: str, seconds: float) -> str:
    """`checked 1200/5000 utterances (24%)  85.3/s  eta 45s`; without a total, the count."""
    rate = done / seconds if seconds > 0 else 0.0
    speed = f"  {rate:.1f}/s" if rate else ""
    if not total:
        return f"{what} {done} {unit}{speed}"
    eta = f"  eta {duration((total - done) / rate)}" if rate and done < total else ""
    return f"{what} {done}/{total} {unit} ({100 * done // total}%){speed}{eta}"


class Progress:
    """Counts for the long steps of a command (ingest, evaluation, batch prediction): one
    `StatusLine` per step, live on a terminal, plain every `every_s` seconds elsewhere, nothing
    at all when `quiet` (the commands' --quiet). Library functions take one; `Progress.off()`
    is the silent default."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float | None = None,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.every_s = every_s if every_s is not None else PLAIN_EVERY_S
        self.quiet, self.clock = quiet, clock

    @classmethod
    def off(cls) -> Progress:
        return cls(io.StringIO(), quiet=True)

    @contextlib.contextmanager
    def step(
        self, what: str, total: int | None = None, unit: str = "utterances"
    ) -> Iterator[Callable[[int], None]]:
        """`with progress.step("checked", total=n) as tick: ... tick(rows)`; the live line is
        cleared when the step ends, so the caller's own closing line follows cleanly."""
        status = StatusLine(
            self.stream, every_s=None if self.quiet else self.every_s, clock=self.clock
        )
        started, done = self.clock(), 0

        def tick(count: int = 1) -> None:
            nonlocal done
            done += count
            status.update(count_line(what, done, total, unit, self.clock() - started))

        try:
            yield tick
        finally:
            status.clear()

    def counted(
        self,
        items: Iterable[T],
        what: str,
        total: int | None = None,
        unit: str = "utterances",
        size: Callable[[T], int] = len,
    ) -> Iterator[T]:
        """`items`, ticking `size(item)` after each is handled."""
        with self.step(what, total, unit) as tick:
            for item in items:
                yield item
                tick(size(item))


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
