"""The model-quality checks of bench/quality.py: which targets a set of test scores meets."""

from __future__ import annotations

import pytest

from vavl.quality import ideal_checks, unpaired_checks

IDEAL = {"av": {"macro_f1": 0.80}, "audio": {"macro_f1": 0.70}, "visual": {"macro_f1": 0.60}}


def scores(av: float, audio: float, visual: float) -> dict[str, float]:
    return {"test/av/macro_f1": av, "test/audio/macro_f1": audio, "test/visual/macro_f1": visual}


def test_within_the_margin_and_fusion_on_top_meets_every_target() -> None:
    checks = ideal_checks(scores(0.79, 0.69, 0.585), IDEAL, "macro_f1", within=0.02)
    assert [c.met for c in checks] == [True, True, True, True]
    assert "gap +0.015" in checks[2].detail


def test_a_condition_too_far_from_ideal_and_fusion_below_audio_are_named() -> None:
    checks = ideal_checks(scores(0.60, 0.65, 0.59), IDEAL, "macro_f1", within=0.02, label="x: ")
    failed = {c.name for c in checks if not c.met}
    assert failed == {
        "x: av within 0.02 of ideal",
        "x: audio within 0.02 of ideal",
        "x: fusion above both modalities",
    }


def test_unpaired_loss_is_judged_per_condition() -> None:
    checks = unpaired_checks(
        scores(0.70, 0.60, 0.50), scores(0.69, 0.55, 0.51), "macro_f1", share=0.5, within=0.02
    )
    assert [c.met for c in checks] == [True, False, True]
    assert "lost +0.050" in checks[1].detail


def test_a_missing_test_metric_is_named() -> None:
    with pytest.raises(KeyError, match="test/visual/macro_f1"):
        ideal_checks(
            {"test/av/macro_f1": 0.5, "test/audio/macro_f1": 0.4}, IDEAL, "macro_f1", within=0.02
        )
