"""What the trainer prints: epoch lines always, step progress live on a terminal and as
throttled plain lines elsewhere."""

from __future__ import annotations

import io
import re

import pytest

from vavl.console import ProgressPrinter, duration, step_line

METRIC = "dev/av/macro_f1"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _step(epoch: int, step: int, steps: int = 100) -> dict[str, float]:
    return {
        "epoch": epoch,
        "step": step,
        "steps": steps,
        "loss": 1.25,
        "samples_per_s": 12.5,
        "eta_s": 65.0,
    }


def _epoch(epoch: int) -> dict[str, float]:
    return {"epoch": epoch, "train/loss": 1.0, "dev/av/macro_f1": 0.5, "best_epoch": 1}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_step_line_names_position_speed_and_eta() -> None:
    line = step_line(_step(3, 40), epochs=20)
    assert line == "epoch   3/20  step 40/100  train loss 1.2500  12.5 samples/s  eta 1m05s"
    assert "eta" not in step_line(_step(3, 100), epochs=20)


def test_plain_output_throttles_step_lines_but_never_epoch_lines() -> None:
    out, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(out, epochs=2, selection_metric=METRIC, every_s=30.0, clock=clock)
    for second, step in [(10, 1), (31, 2), (40, 3), (62, 4)]:
        clock.now = second
        printer.show(_step(1, step))
    printer.show(_epoch(1))
    clock.now = 70
    printer.show(_step(2, 1))  # within 30 s of the epoch line
    printer.close()
    lines = out.getvalue().splitlines()
    assert [re.search(r"step \d+/\d+", line).group() for line in lines[:2]] == [
        "step 2/100",
        "step 4/100",
    ]
    assert lines[2].startswith("epoch   1/2  train loss 1.0000")
    assert len(lines) == 3
    assert "\r" not in out.getvalue()


def test_terminal_rewrites_one_line_and_clears_it_before_the_epoch_line() -> None:
    out = Terminal()
    printer = ProgressPrinter(out, epochs=2, selection_metric=METRIC, every_s=30.0)
    printer.show(_step(1, 1))
    printer.show(_step(1, 2))
    printer.show(_epoch(1))
    text = out.getvalue()
    clear = ProgressPrinter.CLEAR
    step_1, step_2 = (clear + step_line(_step(1, n), epochs=2) for n in (1, 2))
    assert text.startswith(step_1 + step_2 + clear + "epoch   1/2  train loss")
    assert text.endswith("\n") and text.count("\n") == 1


def test_no_step_lines_when_disabled() -> None:
    out = Terminal()
    printer = ProgressPrinter(out, epochs=2, selection_metric=METRIC, every_s=None)
    printer.show(_step(1, 1))
    printer.close()
    assert out.getvalue() == ""


def test_a_note_clears_the_live_line_and_prints_once() -> None:
    out = Terminal()
    printer = ProgressPrinter(out, epochs=2, selection_metric=METRIC, every_s=30.0)
    printer.show(_step(1, 1))
    printer.show({"note": "precision fp32 (train.precision=auto; no native bf16)"})
    assert out.getvalue().endswith(
        ProgressPrinter.CLEAR + "note: precision fp32 (train.precision=auto; no native bf16)\n"
    )
