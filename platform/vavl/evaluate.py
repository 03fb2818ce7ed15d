"""Evaluation in the three conditions: `av` (fusion head on paired rows), `audio` (audio head on
rows with audio) and `visual` (visual head on rows with visual). Metric names are
`{split}/{condition}/{metric}` so that runs line up in MLflow's compare view. Only the conditions
that have rows are reported: a model of an audio-only corpus has no `av` or `visual` metrics.
Beside them, `{split}/mean/{metric}` is each metric's mean over the conditions reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vavl.batch import Batch
from vavl.builders import build_batch_spec
from vavl.config import CONDITIONS, MEAN_OF_CONDITIONS, ExperimentConfig, TaskConfig
from vavl.metrics import task_metrics
from vavl.model import VAVLOutput
from vavl.objectives import TaskObjective
from vavl.phases import forward_batch
from vavl.runtime import autocast, eval_mode
from vavl.store import FeatureStore, iter_batches

HEAD_OF_CONDITION = {"av": "fusion", "audio": "audio", "visual": "visual"}


@dataclass
class ConditionPredictions:
    """Predictions of one head over the rows of one condition (N rows)."""

    ids: list[str] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)  # chunks of (n, K) probs or values
    labels: list[np.ndarray] = field(default_factory=list)  # chunks of (n,) class indices
    attributes: list[np.ndarray] = field(default_factory=list)  # chunks of (n, A)

    def extend(self, other: ConditionPredictions) -> None:
        for name in ("ids", "speakers", "outputs", "labels", "attributes"):
            getattr(self, name).extend(getattr(other, name))

    def __len__(self) -> int:
        return len(self.ids)

    def stacked(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(N, K) outputs and the targets by name, rows in a stable id order."""
        order = np.argsort(np.asarray(self.ids), kind="stable")
        outputs = np.concatenate(self.outputs)[order]
        targets = {}
        if self.labels:
            targets["label"] = np.concatenate(self.labels)[order]
        if self.attributes:
            targets["attributes"] = np.concatenate(self.attributes)[order]
        return outputs, targets


SplitPredictions = dict[str, ConditionPredictions]


def predict(
    model: nn.Module,
    batches: Iterable[Batch],
    objective: TaskObjective,
    *,
    device: torch.device,
    precision: str = "fp32",
) -> SplitPredictions:
    """Run the model over batches in eval mode and collect each condition's predictions."""
    collected: SplitPredictions = {c: ConditionPredictions() for c in CONDITIONS}
    with eval_mode(model):
        for batch in batches:
            batch = batch.to(device)
            with autocast(device, precision):
                out = forward_batch(model, batch)
            for condition, head in HEAD_OF_CONDITION.items():
                rows = getattr(out.present, head)
                if rows is None or not bool(rows.any()):
                    continue
                _collect(
                    collected[condition], batch, getattr(out.predictions, head), rows, objective
                )
    return collected


def _collect(
    into: ConditionPredictions,
    batch: Batch,
    outputs: torch.Tensor,
    rows: torch.Tensor,
    objective: TaskObjective,
) -> None:
    index = rows.nonzero(as_tuple=True)[0].tolist()
    into.ids.extend(batch.ids[i] for i in index)
    into.speakers.extend(batch.speakers[i] for i in index)
    into.outputs.append(objective.predict(outputs[rows].float()))
    if batch.label is not None:
        into.labels.append(batch.label[rows].cpu().numpy())
    if batch.attributes is not None:
        into.attributes.append(batch.attributes[rows].float().cpu().numpy())


def merge(parts: Iterable[SplitPredictions]) -> SplitPredictions:
    """Combine the predictions that several ranks made on their shards of a split."""
    merged: SplitPredictions = {c: ConditionPredictions() for c in CONDITIONS}
    for part in parts:
        for condition, predictions in part.items():
            merged[condition].extend(predictions)
    return merged


def split_metrics(predictions: SplitPredictions, task: TaskConfig, split: str) -> dict[str, float]:
    """`{split}/{condition}/{metric}` for every condition with rows, plus its row count `n`, and
    `{split}/mean/{metric}`: the unweighted mean of each metric over those conditions."""
    metrics: dict[str, float] = {}
    per_name: dict[str, list[float]] = {}
    for condition in CONDITIONS:
        rows = predictions.get(condition)
        if rows is None or len(rows) == 0:
            continue
        outputs, targets = rows.stacked()
        for name, value in task_metrics(task, outputs, targets).items():
            metrics[f"{split}/{condition}/{name}"] = float(value)
            per_name.setdefault(name, []).append(float(value))
        metrics[f"{split}/{condition}/n"] = float(len(rows))
    for name, values in per_name.items():
        metrics[f"{split}/{MEAN_OF_CONDITIONS}/{name}"] = float(np.mean(values))
    return metrics


def predict_split(
    model: nn.Module, cfg: ExperimentConfig, store: FeatureStore, split: str
) -> SplitPredictions:
    """The model's predictions on one split of the store, computed in this process on CPU."""
    batches = iter_batches(
        store.dataset(split),
        build_batch_spec(cfg, store),
        batch_size=cfg.optim.batch_size,
    )
    objective = TaskObjective.from_config(cfg.task)
    return predict(model, batches, objective, device=torch.device("cpu"))


def answer_rows(out: VAVLOutput) -> tuple[torch.Tensor, list[str | None]]:
    """Each row answered with the modalities it has: the fusion head where both are present,
    else the head of its one modality. Returns the (B, K) raw head outputs and each row's
    condition ("av" | "audio" | "visual", None for a row with neither)."""
    reference = next(p for p in (out.predictions.audio, out.predictions.visual) if p is not None)
    absent = torch.zeros(reference.shape[0], dtype=torch.bool, device=reference.device)
    audio = absent if out.present.audio is None else out.present.audio  # (B,)
    visual = absent if out.present.visual is None else out.present.visual
    both = audio & visual
    answer = torch.zeros_like(reference)
    for rows, head in ((audio & ~visual, "audio"), (visual & ~audio, "visual"), (both, "fusion")):
        values = getattr(out.predictions, head)
        if values is not None and bool(rows.any()):
            answer[rows] = values[rows].to(answer.dtype)
    conditions: list[str | None] = [
        "av" if b else "audio" if a else "visual" if v else None
        for a, v, b in zip(audio.tolist(), visual.tolist(), both.tolist(), strict=True)
    ]
    return answer, conditions
