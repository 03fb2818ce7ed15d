"""What users read: the trainer's epoch lines and step progress, and the counts of ingest,
evaluation and prediction (live on a terminal, throttled plain lines elsewhere, none when quiet)."""

from __future__ import annotations

import io
import re

import pytest

from vavl.console import (
    Progress,
    ProgressPrinter,
    StatusLine,
    count_line,
    duration,
    step_line,
)

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


# Progress of ingest, evaluation and batch prediction: one mechanism for all three.


def test_count_line_with_and_without_a_total() -> None:
    assert count_line("checked", 1200, 5000, "utterances", 10.0) == (
        "checked 1200/5000 utterances (24%)  120.0/s  eta 32s"
    )
    assert count_line("checked", 5000, 5000, "utterances", 10.0) == (
        "checked 5000/5000 utterances (100%)  500.0/s"
    )
    assert count_line("read", 7, None, "files", 0.0) == "read 7 files"


def test_progress_on_a_terminal_is_one_live_line_cleared_when_the_step_ends() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress(out, clock=clock)
    with progress.step("loaded and checked", total=48) as tick:
        for _ in range(2):
            clock.now += 1
            tick(16)
    out.write("12:00:01  loaded and checked 40 utterances\n")  # the stage's own closing line
    clear = StatusLine.CLEAR
    assert out.getvalue() == (
        f"{clear}loaded and checked 16/48 utterances (33%)  16.0/s  eta 2s"
        f"{clear}loaded and checked 32/48 utterances (66%)  16.0/s  eta 1s"
        f"{clear}12:00:01  loaded and checked 40 utterances\n"
    )


def test_progress_elsewhere_is_a_plain_line_at_most_every_every_s() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, every_s=30.0, clock=clock)
    items = [[0] * 10 for _ in range(8)]  # 8 batches of 10 utterances, 10 s each
    for _ in progress.counted(items, "answered", total=80):
        clock.now += 10
    assert out.getvalue().splitlines() == [
        "answered 30/80 utterances (37%)  1.0/s  eta 50s",
        "answered 60/80 utterances (75%)  1.0/s  eta 20s",
    ]


def test_quiet_progress_prints_nothing() -> None:
    for out in (Terminal(), io.StringIO()):
        clock = Clock()
        progress = Progress(out, every_s=30.0, quiet=True, clock=clock)
        with progress.step("written", total=10) as tick:
            clock.now += 60
            tick(10)
        assert out.getvalue() == ""
    assert list(Progress.off().counted([[1], [2]], "predicted")) == [[1], [2]]
