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

# Only light modules here (yaml, pydantic): a bad recipe or flag fails before torch, Ray and
# MLflow are imported, in `run`.
from vavl import cli, console, storage
from vavl.config import CONDITIONS, ConfigError, ExperimentConfig

DESCRIPTION = """Train a VAVL model with Ray Train DDP over a feature store. The run is recorded in
MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db): params, per-epoch metrics, the test metrics of
the best checkpoint, plots and the servable model; its name and id are printed at the end."""
EXAMPLES = (
    "vavl-train --config demo --store data/demo/store",
    "vavl-train --config crema-d --store s3://bucket/crema-d --workers 4 --gpus-per-worker 1",
    "vavl-train --config demo --set optim.epochs=3 --print-config",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(DESCRIPTION, EXAMPLES)
    cli.add_recipe_arguments(parser, "override a config field, e.g. --set loss.residual_weight=0.5")
    parser.add_argument(
        "--store", help="feature store path or s3:// URI (default: the recipe's data.store)"
    )
    parser.add_argument(
        "--workers", type=int, help="DDP workers (default: the recipe's train.workers)"
    )
    parser.add_argument(
        "--gpus-per-worker",
        type=float,
        help="GPUs per worker, 0 = CPU with gloo (default: the recipe's train.gpus_per_worker)",
    )
    parser.add_argument(
        "--experiment", help="MLflow experiment (default: the recipe's train.experiment)"
    )
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the interrupted run named RUN from its last checkpoint, with the same "
        "recipe and flags. RUN is the run name: the Run Name column of the MLflow UI (tag "
        "vavl.run_name), the `run` row train prints at the end, and the folder under "
        "train.storage_path that holds its checkpoints (default: start a new run)",
    )
    parser.add_argument(
        "--seeds",
        help="e.g. 0,1,2: one nested run per seed under a parent run holding each metric's "
        "mean, std and 95%% interval (default: one run with the recipe's seed)",
    )
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The config fields the command's own flags set (None: not given)."""
    return {
        "data.store": args.store,
        "train.workers": args.workers,
        "train.gpus_per_worker": args.gpus_per_worker,
        "train.experiment": args.experiment,
    }


def explicit_selection(args: argparse.Namespace) -> bool:
    """Whether the command line sets train.selection_metric (then a store whose dev split lacks
    its condition is an error, instead of selecting on a condition the split has)."""
    return any(item.split("=", 1)[0].strip() == "train.selection_metric" for item in args.set)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 on a bad recipe, flag or store (named on stderr), 1 on a bug."""
    args = parse_args(argv)
    return cli.run(lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    cfg = cli.recipe(args, overrides(args))
    if args.print_config:
        return cli.print_config(cfg)
    seeds = parse_seeds(args.seeds)
    if seeds and args.resume:
        raise ConfigError("--seeds starts new runs; it cannot be combined with --resume")
    return run(cfg, args, seeds)


def parse_seeds(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers") from None


def run(cfg: ExperimentConfig, args: argparse.Namespace, seeds: list[int]) -> int:
    """Train the validated `cfg`: the heavy imports (torch, Ray, MLflow) happen here."""
    from vavl import tracking
    from vavl.train import fit

    names = console.summary_metric_names(cfg.task)
    if seeds:
        return train_several_seeds(cfg, seeds, names, explicit_selection(args))
    result = fit(
        cfg,
        run_name=args.resume,
        resume=args.resume is not None,
        explicit_selection=explicit_selection(args),
    )
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
                ["selected on", result.selection_metric],
                ["best epoch", result.best_epoch],
                ["best checkpoint", result.checkpoint],
                ["model", result.model_uri],
                ["tracking store", storage.hide_password(result.tracking_uri)],
            ],
        )
    )
    print(f"\nOpen the results: {tracking.ui_command(result.tracking_uri)}")
    return 0


def train_several_seeds(
    cfg: ExperimentConfig, seeds: list[int], names: list[str], explicit: bool = False
) -> int:
    from vavl.multiseed import train_seeds

    result = train_seeds(
        cfg,
        seeds,
        parent_name=f"{cfg.name}-seeds-{time.strftime('%Y%m%d-%H%M%S')}",
        explicit_selection=explicit,
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
