"""How sure and how robust a trained model's scores are on one split of a store.

Confidence intervals (`bootstrap_intervals`): a 95% percentile bootstrap of every metric of every
condition. Speakers are resampled with replacement and each drawn speaker brings all of its
utterances of that condition, because utterances of one speaker are not independent; when any
utterance's speaker is unknown (empty), or fewer than MIN_SPEAKERS speakers are present,
utterances are resampled instead, and the report says which was done. With a handful of speakers
a speaker bootstrap has only a few distinct resamples (two speakers: three), so its percentiles
collapse onto them; utterance resampling then gives the usable, if optimistic, interval.
B = 1000 resamples by default, drawn from `numpy.random.default_rng(seed)`: the same seed gives
the same intervals.

Missing-modality protocol (`evaluate_model`, `shares` x `drops`):

1. Population: the utterances of the split that have BOTH modalities (N of them). Only they can
   lose one modality and still be answered; the others are scored in the plain table.
2. Choice: the N utterances are put in a seeded random order (`default_rng(seed)` permutation
   of their sorted ids); at share s the first round(s * N) of them (half up) lose the dropped
   modality. The order is the same for every share and every dropped modality, so the
   utterances dropped at a share are also dropped at every larger share. With `either`, each
   chosen utterance loses audio or visual by a fair coin drawn once per utterance from the same
   generator.
3. Dropping masks the rows in the Batch (mask False, has_<modality> False, frames zeroed); the
   store is never rewritten.
4. The model answers every utterance with what remains: the fusion head where both modalities
   remain, else the remaining branch's head (`vavl.evaluate.answer_rows`).
5. The metric is computed over ALL N utterances, the dropped and the intact together.

Hence share 0 reproduces the plain `av` condition, and share 1 with visual dropped is the audio
head on the same N utterances (the plain `audio` condition when every utterance of the split is
paired).

Only the conditions that exist are reported: on an audio-only or visual-only store, or with a
model of a single-modality corpus, there is no `av` condition and N = 0, so the report has the
one branch's metrics and no missing-modality curve (its table says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vavl import console
from vavl.batch import Batch
from vavl.config import ExperimentConfig, TaskConfig
from vavl.evaluate import (
    CONDITIONS,
    ConditionPredictions,
    SplitPredictions,
    answer_rows,
    predict,
    split_metrics,
)
from vavl.inference import LoadedModel
from vavl.metrics import task_metrics
from vavl.objectives import TaskObjective
from vavl.phases import forward_batch
from vavl.runtime import eval_mode
from vavl.store import FeatureStore, iter_batches

DEFAULT_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
DROPS = ("visual", "audio", "either")
DEFAULT_RESAMPLES = 1000
CI_LEVEL = 0.95
MIN_SPEAKERS = 10  # fewer speakers than this: resample utterances (see the module docstring)


# ---------------------------------------------------------------------------- bootstrap


def _resampling_groups(speakers: Sequence[str]) -> tuple[list[np.ndarray], str]:
    """Index groups to resample: one per speaker, or one per utterance (and which it is)."""
    known = all(s is not None and str(s).strip() for s in speakers)
    names = np.asarray([str(s) for s in speakers])
    if known and len(set(names)) >= MIN_SPEAKERS:
        return [np.flatnonzero(names == s) for s in sorted(set(names))], "speaker"
    return [np.array([i]) for i in range(len(speakers))], "utterance"


def bootstrap_intervals(
    task: TaskConfig,
    outputs: np.ndarray,
    targets: dict[str, np.ndarray],
    speakers: Sequence[str],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> tuple[dict[str, tuple[float, float]], str]:
    """Percentile intervals of every `task_metrics` key for `outputs` (N, K) against `targets`,
    resampling speakers (or utterances, see the module docstring); also returns which."""
    if resamples < 1:
        raise ValueError(f"bootstrap resamples must be >= 1, got {resamples}")
    if len(speakers) != len(outputs):
        raise ValueError(f"{len(speakers)} speakers for {len(outputs)} predictions")
    groups, unit = _resampling_groups(speakers)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        picked = rng.integers(0, len(groups), len(groups))
        rows = np.concatenate([groups[g] for g in picked])
        scores = task_metrics(task, outputs[rows], {k: v[rows] for k, v in targets.items()})
        for name, value in scores.items():
            draws.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2.0 * 100.0
    intervals = {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail)))
        for name, values in draws.items()
    }
    return intervals, unit


# ---------------------------------------------------------------------------- dropping


def drop_modality(batch: Batch, rows: torch.Tensor, modality: str) -> Batch:
    """The batch with `modality` removed from the rows where `rows` (B,) is True: mask False,
    has_<modality> False, frames zeroed. Other rows and the other modality are untouched."""
    if modality not in ("audio", "visual"):
        raise ValueError(f"modality must be 'audio' or 'visual', got {modality!r}")
    keep = ~rows.to(dtype=torch.bool, device=batch.has_audio.device)  # (B,)
    frames = getattr(batch, modality) * keep[:, None, None].to(getattr(batch, modality).dtype)
    return replace(
        batch,
        **{
            modality: frames,
            f"{modality}_mask": getattr(batch, f"{modality}_mask") & keep[:, None],
            f"has_{modality}": getattr(batch, f"has_{modality}") & keep,
        },
    )


@dataclass(frozen=True)
class DropPlan:
    """Which paired utterances lose which modality, for every share (module docstring, step 2)."""

    rank: dict[str, int]  # id -> position in the seeded order
    coin: dict[str, str]  # id -> the modality `either` drops

    @classmethod
    def draw(cls, ids: Iterable[str], seed: int) -> DropPlan:
        ordered = sorted(set(ids))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(ordered))
        coins = rng.random(len(ordered)) < 0.5
        return cls(
            rank={ordered[i]: position for position, i in enumerate(order)},
            coin={u: "audio" if c else "visual" for u, c in zip(ordered, coins, strict=True)},
        )

    def dropped(self, uid: str, share: float, drop: str) -> str | None:
        """The modality `uid` loses at this share, or None."""
        if self.rank[uid] >= math.floor(share * len(self.rank) + 0.5):  # round half up
            return None
        return self.coin[uid] if drop == "either" else drop


def _masked(batch: Batch, plan: DropPlan, share: float, drop: str) -> Batch:
    lost = [plan.dropped(uid, share, drop) for uid in batch.ids]
    for modality in ("audio", "visual"):
        batch = drop_modality(batch, torch.tensor([m == modality for m in lost]), modality)
    return batch


# ---------------------------------------------------------------------------- evaluation


@dataclass
class RobustnessPoint:
    drop: str  # visual | audio | either
    share: float
    dropped: int  # utterances that lost a modality
    n: int  # utterances scored (the whole paired population)
    metrics: dict[str, float]


@dataclass
class EvaluationReport:
    """Metrics per condition with their intervals, and the missing-modality curve."""

    split: str
    task: TaskConfig
    metrics: dict[str, float]  # {split}/{condition}/{metric} and .../n
    intervals: dict[str, tuple[float, float]]  # {split}/{condition}/{metric} -> (low, high)
    resampled: dict[str, str]  # condition -> "speaker" | "utterance"
    robustness: list[RobustnessPoint]
    predictions: SplitPredictions = field(repr=False)
    seed: int = 0
    resamples: int = DEFAULT_RESAMPLES

    @property
    def primary(self) -> str:
        return "ccc_mean" if self.task.kind == "attributes" else "macro_f1"

    def metric_names(self) -> list[str]:
        if self.task.kind == "attributes":
            return [f"ccc_{a}" for a in self.task.attributes] + ["ccc_mean"]
        return ["accuracy", "macro_f1", "uar"]

    @property
    def conditions(self) -> list[str]:
        """The conditions this report has metrics for, in CONDITIONS order."""
        return [c for c in CONDITIONS if f"{self.split}/{c}/n" in self.metrics]

    def resampling(self) -> str:
        """Which units each condition's intervals resampled, e.g. "av: speaker, audio: ..."."""
        return ", ".join(f"{condition}: {unit}" for condition, unit in self.resampled.items())

    def conditions_table(self) -> str:
        rows = []
        for condition in CONDITIONS:
            key = f"{self.split}/{condition}"
            if f"{key}/n" not in self.metrics:
                continue
            cells = [
                f"{self.metrics[f'{key}/{m}']:.3f} [{self.intervals[f'{key}/{m}'][0]:.3f}, "
                f"{self.intervals[f'{key}/{m}'][1]:.3f}]"
                for m in self.metric_names()
            ]
            rows.append([condition, int(self.metrics[f"{key}/n"]), *cells])
        headers = ["condition", "n", *(f"{m} [95% CI]" for m in self.metric_names())]
        return console.table(headers, rows)

    def robustness_table(self, metric: str | None = None) -> str:
        """One row per share, one column per dropped modality: the metric over all N paired."""
        if not self.robustness:
            return (
                "no missing-modality curve: no utterance of the split was answered from both "
                f"modalities (conditions here: {', '.join(self.conditions) or 'none'})"
            )
        metric = metric or self.primary
        drops = list(dict.fromkeys(p.drop for p in self.robustness))
        shares = sorted({p.share for p in self.robustness})
        value = {(p.drop, p.share): p.metrics[metric] for p in self.robustness}
        rows = [[f"{s:.2f}", *(value[(d, s)] for d in drops)] for s in shares]
        return console.table(["share dropped", *(f"{metric} ({d} dropped)" for d in drops)], rows)


def _check_protocol(shares: Sequence[float], drops: Sequence[str]) -> None:
    bad = [s for s in shares if not 0.0 <= s <= 1.0]
    if bad or not shares:
        raise ValueError(f"missing-modality shares must lie in [0, 1], got {list(shares)}")
    unknown = [d for d in drops if d not in DROPS]
    if unknown or not drops:
        raise ValueError(f"drop must be some of {DROPS}, got {list(drops)}")


def evaluate_model(
    model: torch.nn.Module,
    cfg: ExperimentConfig,
    batches: Callable[[], Iterable[Batch]],
    *,
    split: str = "test",
    shares: Sequence[float] = DEFAULT_SHARES,
    drops: Sequence[str] = ("visual", "audio"),
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    device: torch.device | str = "cpu",
    progress: console.Progress | None = None,
    total: int | None = None,
) -> EvaluationReport:
    """Plain metrics per condition with bootstrap CIs, then the missing-modality protocol (see
    the module docstring). `batches()` gives a fresh pass over the split; it is called twice:
    the first pass fixes the paired population the drop plan is drawn over. `progress` counts
    the utterances of each pass (of `total`, the split's rows, when known)."""
    _check_protocol(shares, drops)
    progress = progress if progress is not None else console.Progress.off()
    device = torch.device(device)
    model = model.to(device)
    objective = TaskObjective.from_config(cfg.task)
    first = progress.counted(batches(), "predicted", total)
    predictions = predict(model, first, objective, device=device)
    plan = DropPlan.draw(predictions["av"].ids, seed)
    curves = {(d, float(s)): ConditionPredictions() for d in drops for s in shares}
    dropped = dict.fromkeys(curves, 0)
    # No paired population (a single-modality store or model): no curve, no second pass.
    second = progress.counted(batches(), "missing-modality pass", total) if plan.rank else ()
    for batch in second:
        paired = batch.select(batch.has_audio & batch.has_visual)
        if not len(paired):
            continue
        for drop, share in curves:
            lost = sum(plan.dropped(u, share, drop) is not None for u in paired.ids)
            dropped[(drop, share)] += lost
            masked = _masked(paired, plan, share, drop)
            _answer_into(model, masked, objective, device, curves[(drop, share)])
    return _report(cfg.task, split, predictions, curves, dropped, seed, resamples)


def _answer_into(model, batch: Batch, objective, device, into: ConditionPredictions) -> None:
    batch = batch.to(device)
    with eval_mode(model):
        out = forward_batch(model, batch)
    raw, _ = answer_rows(out)
    into.ids.extend(batch.ids)
    into.speakers.extend(batch.speakers)
    into.outputs.append(objective.predict(raw.float()))
    if batch.label is not None:
        into.labels.append(batch.label.cpu().numpy())
    if batch.attributes is not None:
        into.attributes.append(batch.attributes.float().cpu().numpy())


def _report(task, split, predictions, curves, dropped, seed, resamples) -> EvaluationReport:
    metrics = split_metrics(predictions, task, split)
    intervals: dict[str, tuple[float, float]] = {}
    resampled: dict[str, str] = {}
    for condition in CONDITIONS:
        rows = predictions.get(condition)
        if rows is None or not len(rows):
            continue
        outputs, targets = rows.stacked()
        speakers = np.asarray(rows.speakers)[np.argsort(np.asarray(rows.ids), kind="stable")]
        found, unit = bootstrap_intervals(
            task, outputs, targets, list(speakers), resamples=resamples, seed=seed
        )
        intervals.update({f"{split}/{condition}/{k}": v for k, v in found.items()})
        resampled[condition] = unit
    points = []
    for (drop, share), rows in curves.items():
        if not len(rows):
            continue
        outputs, targets = rows.stacked()
        scores = task_metrics(task, outputs, targets)
        points.append(RobustnessPoint(drop, share, dropped[(drop, share)], len(rows), scores))
    return EvaluationReport(
        split, task, metrics, intervals, resampled, points, predictions, seed, resamples
    )


# ---------------------------------------------------------------------------- entry points


def evaluate_store(
    loaded: LoadedModel,
    store_uri: str,
    *,
    split: str = "test",
    batch_size: int | None = None,
    shares: Sequence[float] = DEFAULT_SHARES,
    drops: Sequence[str] = ("visual", "audio"),
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    progress: console.Progress | None = None,
) -> EvaluationReport:
    """`evaluate_model` on one split of a feature store, read with Ray Data, normalised with the
    model's training statistics (`vavl.inference`). The demo's entry point."""
    from vavl.runtime import ensure_ray

    _check_protocol(shares, drops)
    store = FeatureStore.open(store_uri)
    loaded.check_store(store, labels=True)
    rows = store.count(split)
    if rows == 0:
        raise ValueError(f"split {split!r} of {store_uri} has no rows to evaluate")
    ensure_ray()
    spec = loaded.store_spec(store)
    size = batch_size or loaded.config.optim.batch_size

    def batches() -> Iterable[Batch]:
        return iter_batches(store.dataset(split), spec, batch_size=size)

    return evaluate_model(
        loaded.model,
        loaded.config,
        batches,
        split=split,
        shares=shares,
        drops=drops,
        seed=seed,
        resamples=resamples,
        progress=progress,
        total=rows,
    )


def report_metrics(report: EvaluationReport) -> dict[str, float]:
    """MLflow metrics at step 0: `{split}/{condition}/{metric}` and its `/ci95_low|high`."""
    metrics = dict(report.metrics)
    for key, (low, high) in report.intervals.items():
        metrics[f"{key}/ci95_low"], metrics[f"{key}/ci95_high"] = low, high
    return metrics


def log_report(
    report: EvaluationReport,
    *,
    model_uri: str,
    store: str,
    experiment: str,
    training_run_id: str | None = None,
    run_name: str | None = None,
) -> str:
    """A new MLflow run holding the evaluation, tagged `vavl.evaluates=<training run id>`.

    The curve is logged as `{split}/missing_{drop}/{metric}` with step = share in percent, so
    MLflow draws it; the tables, a robustness.csv, the curve and the per-condition confusion
    matrices or scatter plots are artifacts. Returns the new run's id.
    """
    from vavl import plots, tracking

    tags = {"vavl.model_uri": model_uri, "vavl.run_kind": "evaluation"}
    tags["vavl.conditions"] = ",".join(report.conditions)
    if training_run_id:
        tags["vavl.evaluates"] = training_run_id
    tags[tracking.NOTE] = (
        f"Evaluation of `{model_uri}` on the {report.split} split of feature store `{store}`: "
        "metrics per condition with bootstrap intervals, and the missing-modality curve."
    )
    shares = sorted({p.share for p in report.robustness})
    params = dict(model_uri=model_uri, store=store, split=report.split, seed=report.seed)
    params |= dict(bootstrap=report.resamples, missing_shares=shares)
    params["missing_drops"] = list(dict.fromkeys(p.drop for p in report.robustness))
    run_id = tracking.start_run(
        experiment, run_name or f"eval-{report.split}", params=params, tags=tags
    )
    try:
        tracking.log_metrics(run_id, report_metrics(report), step=0)
        for point in report.robustness:
            prefix = f"{report.split}/missing_{point.drop}"
            curve = {f"{prefix}/{k}": v for k, v in point.metrics.items()}
            tracking.log_metrics(run_id, curve, step=round(point.share * 100))
        text = f"{report.conditions_table()}\n\n{report.robustness_table()}\n"
        tracking.log_text(run_id, text, "evaluation.txt")
        tracking.log_text(run_id, robustness_csv(report), "robustness.csv")
        figures = plots.prediction_figures(report.predictions, report.task, report.split)
        if report.robustness:
            figures["robustness.png"] = robustness_plot(report)
        for name, figure in figures.items():
            tracking.log_figure(run_id, figure, f"plots/{name}")
    except BaseException:
        tracking.end_run(run_id, "FAILED")
        raise
    tracking.end_run(run_id, "FINISHED")
    return run_id


def robustness_csv(report: EvaluationReport) -> str:
    names = list(report.robustness[0].metrics) if report.robustness else []
    lines = [",".join(["drop", "share", "dropped", "n", *names])]
    for p in report.robustness:
        values = [f"{p.metrics[n]:.6f}" for n in names]
        lines.append(",".join([p.drop, f"{p.share:g}", str(p.dropped), str(p.n), *values]))
    return "\n".join(lines) + "\n"


def robustness_plot(report: EvaluationReport, metric: str | None = None):  # -> Figure
    """One curve per dropped modality; the plain av condition as a reference line."""
    from vavl import plots

    metric = metric or report.primary
    curves: dict[str, list[tuple[float, float]]] = {}
    for p in report.robustness:
        curves.setdefault(p.drop, []).append((p.share, p.metrics[metric]))
    n = report.robustness[0].n if report.robustness else 0
    reference = report.metrics.get(f"{report.split}/av/{metric}")
    refs = {"av (plain)": reference} if reference is not None else {}
    return plots.robustness_figure(curves, metric, f"{report.split}: {n} paired utterances", refs)
