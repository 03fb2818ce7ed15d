"""Figures logged with a run: confusion matrices, attribute scatter plots, learning curves."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from vavl.config import TaskConfig
from vavl.evaluate import SplitPredictions
from vavl.metrics import confusion_matrix
from vavl.search_space import SearchSpace


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """(K, K) counts, rows = true class; cells annotated with counts, colour = row share."""
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if shares[i, j] > 0.5 else "black"
        ax.text(j, i, str(int(count)), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def scatter_figure(
    predictions: np.ndarray, targets: np.ndarray, names: Sequence[str], title: str
) -> Figure:
    """One panel per attribute: prediction against target, (N, A) each."""
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        ax.scatter(targets[:, k], predictions[:, k], s=6, alpha=0.5)
        low = float(min(targets[:, k].min(), predictions[:, k].min()))
        high = float(max(targets[:, k].max(), predictions[:, k].max()))
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curves_figure(history: Sequence[dict[str, float]], selection_metric: str) -> Figure:
    """Training loss and the development metrics per epoch."""
    epochs = [int(h["epoch"]) for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train/loss", "train/audio/loss", "train/visual/loss", "train/fusion/loss"):
        if all(key in h for h in history):
            left.plot(epochs, [h[key] for h in history], label=key)
    left.set_xlabel("epoch")
    left.set_title("training losses")
    left.legend(fontsize=7)
    metric = selection_metric.rsplit("/", 1)[-1]
    for condition in ("av", "audio", "visual"):
        key = f"dev/{condition}/{metric}"
        if all(key in h for h in history):
            right.plot(epochs, [h[key] for h in history], label=key)
    right.set_xlabel("epoch")
    right.set_title(f"development {metric}")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def prediction_figures(
    predictions: SplitPredictions, task: TaskConfig, split: str
) -> dict[str, Figure]:
    """A confusion matrix (categories) or scatter plot (attributes) per condition with rows."""
    figures = {}
    for condition, rows in predictions.items():
        if len(rows) == 0:
            continue
        outputs, targets = rows.stacked()
        title = f"{split} / {condition} ({len(rows)} utterances)"
        if task.kind == "categorical":
            matrix = confusion_matrix(targets["label"], outputs.argmax(axis=1), task.num_outputs)
            figures[f"{split}_{condition}_confusion.png"] = confusion_figure(
                matrix, task.classes, title
            )
        else:
            figures[f"{split}_{condition}_scatter.png"] = scatter_figure(
                outputs, targets["attributes"], task.attributes, title
            )
    return figures


def optuna_figures(
    scored: list[tuple[dict[str, Any], float]], space: SearchSpace, mode: str
) -> dict[str, Figure]:
    """Optuna's optimisation history, parameter importances and a contour of the first two
    parameters, drawn from the sweep's scored trials (so they survive a resumed sweep)."""
    import optuna
    import optuna.visualization.matplotlib as ovm

    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    distributions = {path: param.optuna() for path, param in space.items()}
    for params, score in scored:
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=score)
        )
    # Optuna's matplotlib plots are marked experimental, and importances of a few trials warn
    # that they are equal: notices about the figures, not anything a user can change.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
        figures = {"optimization_history.png": _figure_of(ovm.plot_optimization_history(study))}
        distinct = {tuple(sorted(params.items())) for params, _ in scored}
        if len(distinct) >= 2:
            figures["param_importances.png"] = _figure_of(ovm.plot_param_importances(study))
            if len(space) >= 2:
                first, second = list(space)[:2]
                contour = ovm.plot_contour(study, params=[first, second])
                figures["contour.png"] = _figure_of(contour)
    return figures


def _figure_of(axes: Any) -> Figure:
    first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
    return first.figure


def robustness_figure(
    curves: dict[str, Sequence[tuple[float, float]]],
    metric: str,
    title: str,
    references: dict[str, float] | None = None,
) -> Figure:
    """The missing-modality curves: `curves` maps a dropped modality to (share, metric) points;
    `references` (label -> value) are drawn as dotted horizontal lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for drop, points in curves.items():
        shares, values = zip(*sorted(points), strict=True)
        ax.plot(shares, values, marker="o", label=f"{drop} dropped")
    greys = ("0.3", "0.6", "0.8")
    for k, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle=":", linewidth=1, color=greys[k % len(greys)], label=label)
    ax.set_xlabel("share of paired utterances with the modality dropped")
    ax.set_ylabel(metric)
    ax.set_xlim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
