"""What users read: per-epoch progress lines and closing summary tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vavl.config import CONDITIONS, TaskConfig


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
