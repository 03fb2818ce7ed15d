"""Evaluation metrics over a whole split (numpy only; no torch).

Key names are final and line up in MLflow as `{split}/{condition}/{key}`: accuracy, macro_f1,
micro_f1, uar for categorical tasks; ccc_<attribute> and ccc_mean for attribute tasks.
Shapes: N utterances, K classes, A attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from vavl.config import TaskConfig


def _as_1d(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D (N,), got shape {array.shape}")
    return array


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio that is 0 where the denominator is 0 (sklearn's zero_division=0)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def concordance(pred: np.ndarray, target: np.ndarray) -> float:
    """Concordance correlation coefficient of `pred` (N,) with `target` (N,), population moments.

    Defined as 0.0 when either side is constant (which includes N == 1): their covariance is 0, and
    fixing the value avoids the 0/0 of two equal constants. Never NaN; empty input raises.
    """
    x = _as_1d(pred, "pred").astype(np.float64)
    y = _as_1d(target, "target").astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pred has {x.size} values, target has {y.size}")
    if x.size == 0:
        raise ValueError("concordance of empty arrays is undefined")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(
            f"concordance needs finite values: pred has {int((~np.isfinite(x)).sum())} and target "
            f"{int((~np.isfinite(y)).sum())} NaN/inf"
        )
    # Exact test for constants: float rounding would leave a tiny variance and a meaningless ratio.
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    cov = float(np.mean(dx * dy))
    denominator = float(np.mean(dx * dx) + np.mean(dy * dy) + (x.mean() - y.mean()) ** 2)
    return 2.0 * cov / denominator


def _check_classes(values: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class indices, got dtype {values.dtype}")
    bad = np.flatnonzero((values < 0) | (values >= num_classes))
    if bad.size:
        raise ValueError(
            f"{what}[{bad[0]}] = {values[bad[0]]} is not a class in [0, {num_classes})"
        )
    return values.astype(np.int64)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are the true class, columns the predicted class."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = _check_classes(_as_1d(true, "true"), num_classes, "true")
    p = _check_classes(_as_1d(pred, "pred"), num_classes, "pred")
    if t.shape != p.shape:
        raise ValueError(f"true has {t.size} labels, pred has {p.size}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def classification_metrics(
    true: np.ndarray, pred: np.ndarray, num_classes: int
) -> dict[str, float]:
    """accuracy, macro_f1, micro_f1 and uar of class indices `pred` (N,) against `true` (N,).

    macro_f1 averages F1 over ALL K classes, a class never true nor predicted scoring 0
    (sklearn's f1_score(average="macro", labels=range(K), zero_division=0)). micro_f1 equals
    accuracy for single-label data. uar averages recall over the classes present in `true`
    (sklearn's balanced_accuracy_score).
    """
    matrix = confusion_matrix(true, pred, num_classes)
    total = int(matrix.sum())
    if total == 0:
        raise ValueError("classification metrics of an empty split are undefined")
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)  # true count per class
    predicted = matrix.sum(axis=0)
    f1 = _safe_divide(2.0 * hits, support + predicted)
    recall = _safe_divide(hits, support)
    accuracy = float(hits.sum() / total)
    return {
        "accuracy": accuracy,
        "macro_f1": float(f1.mean()),
        "micro_f1": accuracy,
        "uar": float(recall[support > 0].mean()),
    }


def attribute_metrics(
    pred: np.ndarray, target: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """ccc_<name> for each column of `pred` (N, A) against `target` (N, A), and their ccc_mean."""
    x, y = np.asarray(pred), np.asarray(target)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(
            f"pred and target must be (N, A) of one shape, got {x.shape} and {y.shape}"
        )
    if x.shape[1] != len(names):
        raise ValueError(f"{x.shape[1]} attribute columns for {len(names)} names {list(names)}")
    scores = {f"ccc_{name}": concordance(x[:, i], y[:, i]) for i, name in enumerate(names)}
    scores["ccc_mean"] = float(np.mean(list(scores.values())))
    return scores


def _target(targets: Mapping[str, np.ndarray], key: str, task: TaskConfig) -> np.ndarray:
    if targets.get(key) is None:
        raise ValueError(f"targets lack {key!r}, which a {task.kind} task is scored against")
    return np.asarray(targets[key])


def task_metrics(
    task: TaskConfig, predictions: np.ndarray, targets: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """The trainer's entry point: score `predictions` (N, K) against `targets`.

    Categorical: `predictions` are class probabilities (or logits; only the argmax matters),
    `targets["label"]` (N,) class indices. Attributes: `predictions` are values,
    `targets["attributes"]` (N, A).
    """
    scores = np.asarray(predictions)
    if scores.ndim != 2 or scores.shape[1] != task.num_outputs:
        raise ValueError(f"predictions must be (N, {task.num_outputs}), got shape {scores.shape}")
    if task.kind == "attributes":
        return attribute_metrics(scores, _target(targets, "attributes", task), task.attributes)
    labels = _target(targets, "label", task)
    return classification_metrics(labels, scores.argmax(axis=1), task.num_outputs)
