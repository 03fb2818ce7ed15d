"""Train a VAVL model with Ray Train DDP over a feature store; everything is logged to MLflow.

    python pipelines/train.py --config configs/demo.yaml [--store PATH|s3://...] [--set k=v ...]

On a running cluster (see README, "Running on a cluster"):

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "..."}}' \\
        -- python pipelines/train.py --config configs/demo.yaml --store s3://bucket/stores/demo
"""

from __future__ import annotations

import argparse
import sys
import time

from vavl import console, tracking
from vavl.config import CONDITIONS, ConfigError, load_config
from vavl.multiseed import train_seeds
from vavl.store import StoreError
from vavl.train import fit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="recipe YAML under configs/")
    parser.add_argument("--store", help="feature store path or s3:// URI (overrides data.store)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set loss.residual_weight=0.5",
    )
    parser.add_argument("--workers", type=int, help="DDP workers (overrides train.workers)")
    parser.add_argument("--gpus-per-worker", type=float, help="GPUs per worker (0 = CPU, gloo)")
    parser.add_argument("--experiment", help="MLflow experiment (overrides train.experiment)")
    parser.add_argument("--resume", metavar="RUN", help="continue the interrupted run RUN")
    parser.add_argument(
        "--seeds",
        help="e.g. 0,1,2: one nested run per seed under a parent run "
        "holding each metric's mean, std and 95%% interval",
    )
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> list[str]:
    flags = {
        "data.store": args.store,
        "train.workers": args.workers,
        "train.gpus_per_worker": args.gpus_per_worker,
        "train.experiment": args.experiment,
    }
    return [*args.set, *(f"{key}={value}" for key, value in flags.items() if value is not None)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, overrides(args))
        names = console.summary_metric_names(cfg.task)
        if args.seeds:
            if args.resume:
                raise ConfigError("--seeds starts new runs; it cannot be combined with --resume")
            return train_several_seeds(cfg, args.seeds, names)
        result = fit(cfg, run_name=args.resume, resume=args.resume is not None)
    except (ConfigError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = console.metrics_by_condition(result.dev, "dev", names)
    rows += console.metrics_by_condition(result.test, "test", names)
    print()
    print(console.table(["split", "condition", *names], rows))
    print()
    print(
        console.table(
            ["", ""],
            [
                ["run", result.run_name],
                ["MLflow run id", result.run_id],
                ["best epoch", result.best_epoch],
                ["best checkpoint", result.checkpoint],
                ["model", result.model_uri],
                ["tracking store", result.tracking_uri],
            ],
        )
    )
    print(f"\nOpen the results: {tracking.ui_command(result.tracking_uri)}")
    return 0


def train_several_seeds(cfg, seeds: str, names: list[str]) -> int:
    values = [int(seed) for seed in seeds.split(",") if seed.strip()]
    result = train_seeds(
        cfg, values, parent_name=f"{cfg.name}-seeds-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    keys = [
        f"{split}/{condition}/{name}"
        for split in ("dev", "test")
        for condition in CONDITIONS
        for name in names
    ]
    print(
        console.table(["metric", "mean", "std", "ci95_low", "ci95_high"], result.table_rows(keys))
    )
    print(f"\nMLflow parent run: {result.parent_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
