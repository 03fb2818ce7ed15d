"""Bootstrap intervals and the missing-modality protocol, in-process on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.factories import random_batch, tiny_config
from vavl.builders import build_model
from vavl.config import TaskConfig
from vavl.evaluate import predict
from vavl.metrics import task_metrics
from vavl.objectives import TaskObjective
from vavl.robustness import (
    MIN_SPEAKERS,
    DropPlan,
    bootstrap_intervals,
    drop_modality,
    evaluate_model,
    robustness_csv,
)

TASK = TaskConfig(kind="categorical", classes=["a", "b"])


def clustered(
    per_speaker: int = 10, speakers: int = 2
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """The first half of the speakers is always right, the rest always wrong: accuracy 0.5."""
    rows = per_speaker * speakers
    outputs = np.zeros((rows, 2))
    outputs[: rows // 2, 0] = 1.0  # predicts class 0 = right
    outputs[rows // 2 :, 1] = 1.0  # predicts class 1 = wrong
    names = [f"s{i}" for i in range(speakers) for _ in range(per_speaker)]
    return outputs, {"label": np.zeros(rows, dtype=np.int64)}, names


def test_speaker_bootstrap_resamples_whole_speakers() -> None:
    outputs, targets, speakers = clustered(per_speaker=5, speakers=MIN_SPEAKERS)
    intervals, unit = bootstrap_intervals(TASK, outputs, targets, speakers, seed=0)
    assert unit == "speaker"
    # Each resample draws 10 whole speakers, so its accuracy is a multiple of 0.1 (a binomial
    # share around 0.5): the interval is as wide as 10 coin flips, not as 50.
    low, high = intervals["accuracy"]
    assert np.allclose([low * 10, high * 10], np.round([low * 10, high * 10]))
    assert low <= 0.3 and high >= 0.7
    utterances, _ = bootstrap_intervals(TASK, outputs, targets, [""] * len(speakers), seed=0)
    assert high - low > utterances["accuracy"][1] - utterances["accuracy"][0]
    again, _ = bootstrap_intervals(TASK, outputs, targets, speakers, seed=0)
    assert again == intervals


def test_too_few_speakers_fall_back_to_utterances() -> None:
    # Two speakers give a speaker bootstrap three distinct resamples: not an interval.
    outputs, targets, speakers = clustered(per_speaker=10, speakers=2)
    _, unit = bootstrap_intervals(TASK, outputs, targets, speakers, seed=0)
    assert unit == "utterance"


def test_unknown_speakers_fall_back_to_utterances() -> None:
    outputs, targets, speakers = clustered()
    speakers[3] = ""
    intervals, unit = bootstrap_intervals(TASK, outputs, targets, speakers, seed=0)
    assert unit == "utterance"
    low, high = intervals["accuracy"]
    # 20 independent coin flips: the 95% interval of their mean is about 0.5 +- 0.22.
    assert 0.2 <= low < 0.5 < high <= 0.8
    one_speaker, unit = bootstrap_intervals(TASK, outputs, targets, ["s0"] * 20, resamples=50)
    assert unit == "utterance" and one_speaker["accuracy"][0] < one_speaker["accuracy"][1]


def test_bootstrap_rejects_bad_arguments() -> None:
    outputs, targets, speakers = clustered()
    with pytest.raises(ValueError, match="resamples must be >= 1, got 0"):
        bootstrap_intervals(TASK, outputs, targets, speakers, resamples=0)
    with pytest.raises(ValueError, match="19 speakers for 20 predictions"):
        bootstrap_intervals(TASK, outputs, targets, speakers[1:])


def test_drop_modality_masks_only_the_chosen_rows() -> None:
    batch = random_batch([True] * 4, [True] * 4, seed=1)
    rows = torch.tensor([True, False, True, False])
    dropped = drop_modality(batch, rows, "visual")
    assert dropped.has_visual.tolist() == [False, True, False, True]
    assert not dropped.visual_mask[rows].any() and dropped.visual[rows].abs().sum() == 0
    assert torch.equal(dropped.visual[~rows], batch.visual[~rows])
    assert torch.equal(dropped.audio, batch.audio) and dropped.has_audio.all()
    assert batch.has_visual.all()  # the input batch is not modified
    with pytest.raises(ValueError, match="'audio' or 'visual', got 'video'"):
        drop_modality(batch, rows, "video")


def test_drop_plan_is_seeded_nested_and_exact() -> None:
    ids = [f"u{i:02d}" for i in range(10)]
    plan = DropPlan.draw(ids, seed=3)
    assert plan == DropPlan.draw(list(reversed(ids)), seed=3)  # input order does not matter
    assert plan != DropPlan.draw(ids, seed=4)
    chosen = {
        share: {u for u in ids if plan.dropped(u, share, "visual")}
        for share in (0.0, 0.25, 0.5, 0.75, 1.0)
    }
    # round half up: 10 * 0.25 = 2.5 -> 3, 7.5 -> 8.
    assert [len(chosen[s]) for s in sorted(chosen)] == [0, 3, 5, 8, 10]
    assert chosen[0.25] <= chosen[0.5] <= chosen[0.75] <= chosen[1.0]
    either = {plan.dropped(u, 1.0, "either") for u in ids}
    assert either == {"audio", "visual"}
    assert all(plan.dropped(u, 1.0, "audio") == "audio" for u in ids)


def model_and_batches(paired_only: bool):
    torch.manual_seed(0)
    cfg = tiny_config("task.classes=[a,b,c]")
    model = build_model(cfg).eval()
    has_a = [True] * 6 if paired_only else [True, True, True, True, False, True]
    has_v = [True] * 6 if paired_only else [True, True, False, True, True, True]
    batches = [random_batch(has_a, has_v, num_classes=3, seed=s) for s in range(4)]
    for k, batch in enumerate(batches):  # distinct ids; MIN_SPEAKERS speakers across batches
        batch.ids = [f"b{k}-{uid}" for uid in batch.ids]
        batch.speakers = [f"spk{(k * len(batch) + i) % MIN_SPEAKERS}" for i in range(len(batch))]
    return model, cfg, batches


def test_share_0_is_the_plain_av_condition_and_share_1_the_branch() -> None:
    model, cfg, batches = model_and_batches(paired_only=True)
    report = evaluate_model(
        model, cfg, lambda: batches, drops=("visual", "audio"), resamples=20, seed=1
    )
    point = {(p.drop, p.share): p for p in report.robustness}
    names = ("accuracy", "macro_f1", "uar")
    plain = report.metrics
    for drop, branch in (("visual", "audio"), ("audio", "visual")):
        assert point[(drop, 0.0)].dropped == 0 and point[(drop, 1.0)].dropped == 24
        for name in names:
            assert point[(drop, 0.0)].metrics[name] == plain[f"test/av/{name}"]
            assert point[(drop, 1.0)].metrics[name] == plain[f"test/{branch}/{name}"]
    assert point[("visual", 0.5)].dropped == 12 and point[("visual", 0.5)].n == 24
    assert report.resampled == {"av": "speaker", "audio": "speaker", "visual": "speaker"}
    for key, (low, high) in report.intervals.items():
        assert low <= high, key
    assert (
        robustness_csv(report).splitlines()[0]
        == "drop,share,dropped,n,accuracy,macro_f1,micro_f1,uar"
    )
    assert "macro_f1 (visual dropped)" in report.robustness_table()


def test_mixed_split_protocol_scores_the_paired_rows_only() -> None:
    model, cfg, batches = model_and_batches(paired_only=False)
    report = evaluate_model(
        model, cfg, lambda: batches, shares=(0.5, 1.0), drops=("either",), resamples=10
    )
    objective = TaskObjective.from_config(cfg.task)
    plain = predict(model, batches, objective, device=torch.device("cpu"))
    paired = sorted(plain["av"].ids)
    plan = DropPlan.draw(paired, seed=0)
    # Rebuild share 1 of `either` from the plain per-head predictions of the same rows.
    by_head = {
        head: dict(zip(plain[head].ids, np.concatenate(plain[head].outputs), strict=True))
        for head in ("audio", "visual")
    }
    kept = {"visual": "audio", "audio": "visual"}
    rebuilt = np.stack([by_head[kept[plan.dropped(u, 1.0, "either")]][u] for u in paired])
    labels = dict(zip(plain["av"].ids, np.concatenate(plain["av"].labels), strict=True))
    expected = task_metrics(cfg.task, rebuilt, {"label": np.array([labels[u] for u in paired])})
    last = next(p for p in report.robustness if p.share == 1.0)
    assert last.n == len(paired) == 16 and last.dropped == 16
    assert last.metrics == pytest.approx(expected)


def test_protocol_arguments_are_checked() -> None:
    model, cfg, batches = model_and_batches(paired_only=True)
    with pytest.raises(ValueError, match=r"shares must lie in \[0, 1\], got \[1.5\]"):
        evaluate_model(model, cfg, lambda: batches, shares=(1.5,))
    with pytest.raises(ValueError, match="drop must be some of"):
        evaluate_model(model, cfg, lambda: batches, drops=("video",))
