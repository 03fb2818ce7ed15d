"""One experiment trained under several seeds: an MLflow parent run over one nested run per seed.

The parent holds, for every dev and test metric `{split}/{condition}/{metric}` that every seed
reported, its mean, sample standard deviation (ddof=1) and 95% t-interval across the seeds:
`.../mean`, `.../std`, `.../ci95_low`, `.../ci95_high` (mean -+ t_{0.975, n-1} * std / sqrt(n)).
Row counts (`.../n`) are the same for every seed and are not aggregated. A `seeds.csv` artifact
lists each seed's run and metrics. The seeds run one after another, each a full `vavl.train.fit`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from vavl import tracking
from vavl.config import ConfigError, ExperimentConfig, validate_config
from vavl.train import TrainResult, fit

CI_LEVEL = 0.95
STATISTICS = ("mean", "std", "ci95_low", "ci95_high")


@dataclass
class MultiSeedResult:
    parent_run_id: str
    parent_name: str
    seeds: list[int]
    runs: list[TrainResult]
    aggregates: dict[str, float] = field(default_factory=dict)  # e.g. test/av/macro_f1/mean

    def table_rows(self, names: Sequence[str]) -> list[list[object]]:
        """(metric, mean, std, ci95_low, ci95_high) for each requested `{split}/{cond}/{m}`."""
        return [
            [name, *(self.aggregates.get(f"{name}/{s}") for s in STATISTICS)]
            for name in names
            if f"{name}/mean" in self.aggregates
        ]


def with_seed(cfg: ExperimentConfig, seed: int) -> ExperimentConfig:
    tree = cfg.model_dump(mode="json")
    tree["train"]["seed"] = seed
    return validate_config(tree, source=f"config with train.seed={seed}")


def aggregate(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean, std and 95% t-interval of every metric present in all of `per_seed` (>= 2)."""
    if len(per_seed) < 2:
        raise ValueError(f"aggregating across seeds needs >= 2 runs, got {len(per_seed)}")
    shared = set.intersection(*(set(m) for m in per_seed))
    n = len(per_seed)
    quantile = float(stats.t.ppf(0.5 + CI_LEVEL / 2, df=n - 1))
    out: dict[str, float] = {}
    for name in sorted(k for k in shared if not k.endswith("/n")):
        values = np.asarray([m[name] for m in per_seed], dtype=np.float64)
        mean, std = float(values.mean()), float(values.std(ddof=1))
        half = quantile * std / math.sqrt(n)
        out |= {f"{name}/mean": mean, f"{name}/std": std}
        out |= {f"{name}/ci95_low": mean - half, f"{name}/ci95_high": mean + half}
    return out


def train_seeds(
    cfg: ExperimentConfig,
    seeds: Sequence[int],
    *,
    parent_name: str | None = None,
    show_progress: bool = True,
    log_model: bool = True,
    explicit_selection: bool = False,
) -> MultiSeedResult:
    """Train `cfg` once per seed as nested runs of a new parent run; log the aggregates there.
    `show_progress`, `log_model` and `explicit_selection` go to every `vavl.train.fit`."""
    seeds = list(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds needs >= 2 distinct seeds for a t-interval, got {seeds}")
    parent_name = parent_name or f"{cfg.name}-seeds-{time.strftime('%Y%m%d-%H%M%S')}"
    params = {**cfg.flat_params(), "seeds": seeds}
    parent = tracking.start_run(
        cfg.train.experiment,
        parent_name,
        params=params,
        tags={"vavl.run_name": parent_name, "vavl.run_kind": "multiseed"},
    )
    tracking.describe(
        parent,
        f"Seeds {', '.join(map(str, seeds))} of recipe `{cfg.name}` on "
        f"{tracking.store_words(cfg.data.store)}: each metric's mean, std and 95% interval.",
    )
    runs: list[TrainResult] = []
    try:
        for seed in seeds:
            runs.append(
                fit(
                    with_seed(cfg, seed),
                    run_name=f"{parent_name}-seed{seed}",
                    parent_run_id=parent,
                    show_progress=show_progress,
                    log_model=log_model,
                    explicit_selection=explicit_selection,
                )
            )
        aggregates = aggregate([{**r.dev, **r.test} for r in runs])
        tracking.log_metrics(parent, aggregates, step=0)
        tracking.log_text(parent, _seeds_csv(seeds, runs), "seeds.csv")
    except BaseException:
        tracking.end_run(parent, "FAILED")
        raise
    tracking.end_run(parent, "FINISHED")
    return MultiSeedResult(parent, parent_name, seeds, runs, aggregates)


def _seeds_csv(seeds: list[int], runs: list[TrainResult]) -> str:
    names = sorted(set.intersection(*(set(r.dev) | set(r.test) for r in runs)))
    lines = [",".join(["seed", "run_id", *names])]
    for seed, run in zip(seeds, runs, strict=True):
        values = {**run.dev, **run.test}
        lines.append(",".join([str(seed), run.run_id or "", *(f"{values[n]:.6f}" for n in names)]))
    return "\n".join(lines) + "\n"
