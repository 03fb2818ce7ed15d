"""What a sweep prints: one plain line per trial event off a terminal; on a terminal the start
and end lines, and a live view of the running trials redrawn in place."""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

from vavl.sweep_console import UP, TrialLines

METRIC = "dev/av/macro_f1_smoothed"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeTrial:
    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    error_file: str | None = None


def _sweep(lines: TrialLines, clock: Clock) -> None:
    """Two trials: a finishes its 4 epochs, b is stopped by ASHA after epoch 2."""
    a = FakeTrial("aaaa0001", {"loss.residual_weight": 0.5543, "optim.lr": 0.001})
    b = FakeTrial("bbbb0002", {"loss.residual_weight": 2.0, "optim.lr": 0.0003})
    lines.on_trial_start(0, [], a)
    lines.on_trial_start(0, [], b)
    for epoch in (1, 2):
        clock.now += 10
        for trial, score in ((a, 0.4 + epoch / 10), (b, 0.1 * epoch)):
            trial.last_result = {"epoch": epoch, METRIC: score}
            lines.on_trial_result(0, [], trial, trial.last_result)
    lines.on_trial_complete(0, [], b)
    for epoch in (3, 4):
        a.last_result = {"epoch": epoch, METRIC: 0.7}
        lines.on_trial_result(0, [], a, a.last_result)
    lines.on_trial_complete(0, [], a)
    lines.on_experiment_end([])


def test_plain_output_has_one_line_per_event_and_no_escape_codes() -> None:
    out, clock = io.StringIO(), Clock()
    _sweep(TrialLines(METRIC, 4, stream=lambda: out, clock=clock), clock)
    assert out.getvalue().splitlines() == [
        "trial aaaa0001 started: loss.residual_weight=0.554 optim.lr=0.001",
        "trial bbbb0002 started: loss.residual_weight=2 optim.lr=0.0003",
        f"trial aaaa0001 epoch 1: {METRIC} 0.500",
        f"trial bbbb0002 epoch 1: {METRIC} 0.100",
        f"trial aaaa0001 epoch 2: {METRIC} 0.600",
        f"trial bbbb0002 epoch 2: {METRIC} 0.200",
        f"trial bbbb0002 stopped early at epoch 2 (ASHA): {METRIC} 0.200",
        f"trial aaaa0001 epoch 3: {METRIC} 0.700",
        f"trial aaaa0001 epoch 4: {METRIC} 0.700",
        f"trial aaaa0001 finished after 4 epochs: {METRIC} 0.700",
    ]
    assert "\x1b" not in out.getvalue()


def _screen(text: str) -> list[str]:
    """The lines left on a terminal after `text`: UP(n) removes the last n lines."""
    lines: list[str] = []
    for part in re.split(r"(\x1b\[\d+F\x1b\[J)", text):
        erase = re.fullmatch(r"\x1b\[(\d+)F\x1b\[J", part)
        if erase:
            del lines[len(lines) - int(erase.group(1)) :]
        else:
            lines.extend(part.splitlines())
    return lines


def test_terminal_shows_one_row_per_running_trial_redrawn_in_place() -> None:
    out, clock = Terminal(), Clock()
    lines = TrialLines(METRIC, 4, stream=lambda: out, clock=clock)
    a = FakeTrial("aaaa0001", {"loss.residual_weight": 0.5543})
    b = FakeTrial("bbbb0002", {"loss.residual_weight": 2.0})
    lines.on_trial_start(0, [], a)
    lines.on_trial_start(0, [], b)
    clock.now += 65
    a.last_result = {"epoch": 1, METRIC: 0.5}
    lines.on_trial_result(0, [], a, a.last_result)
    assert _screen(out.getvalue()) == [
        "trial aaaa0001 started: loss.residual_weight=0.554",
        "trial bbbb0002 started: loss.residual_weight=2",
        f"  aaaa0001  epoch 1/4  {METRIC} 0.500  1m05s  loss.residual_weight=0.554",
        f"  bbbb0002  epoch 0/4  {METRIC} -  1m05s  loss.residual_weight=2",
    ]
    assert "epoch 1:" not in out.getvalue()  # the row replaces the epoch line
    assert UP.format(2) in out.getvalue()

    clock.now += 0.5
    before = out.getvalue()
    lines.on_step_end(0, [])  # within a second of the last draw: nothing
    assert out.getvalue() == before
    clock.now += 1
    lines.on_step_end(0, [])
    assert "1m06s" in _screen(out.getvalue())[-1]


def test_terminal_keeps_start_and_end_lines_and_clears_the_view_at_the_end() -> None:
    out, clock = Terminal(), Clock()
    _sweep(TrialLines(METRIC, 4, stream=lambda: out, clock=clock), clock)
    assert _screen(out.getvalue()) == [
        "trial aaaa0001 started: loss.residual_weight=0.554 optim.lr=0.001",
        "trial bbbb0002 started: loss.residual_weight=2 optim.lr=0.0003",
        f"trial bbbb0002 stopped early at epoch 2 (ASHA): {METRIC} 0.200",
        f"trial aaaa0001 finished after 4 epochs: {METRIC} 0.700",
    ]


def test_rows_fit_the_terminal_width(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out, clock = Terminal(), Clock()
    lines = TrialLines(METRIC, 4, stream=lambda: out, clock=clock)
    lines.on_trial_start(0, [], FakeTrial("aaaa0001", {"loss.residual_weight": 0.5}))
    assert all(len(line) <= 39 for line in _screen(out.getvalue())[1:])


def test_pickles_without_the_screen_state() -> None:
    lines = TrialLines(METRIC, 4)
    lines._live, lines._drawn = True, 3
    copy = pickle.loads(pickle.dumps(lines))
    assert copy._live is None and copy._drawn == 0 and copy._metric == METRIC
