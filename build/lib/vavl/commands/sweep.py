"""`vavl-sweep --space NAME`, and the command line shared by the sweep scripts in tuning/: each
states a search space and calls `sweep_main`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only light modules here: a bad recipe or flag fails before torch, Ray and MLflow are imported
# (in `sweep_main`, after the config is validated).
from vavl import console
from vavl.config import ConfigError, load_config
from vavl.search_space import SearchSpace


def parse_args(
    description: str, argv: list[str] | None, *, spaces: list[str] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    if spaces:
        parser.add_argument("--space", choices=spaces, default=spaces[0], help="search space")
    parser.add_argument("--config", required=True, help="recipe YAML under configs/")
    parser.add_argument("--store", help="feature store path or s3:// URI (overrides data.store)")
    parser.add_argument("--trials", type=int, help="trials in all (overrides tune.trials)")
    parser.add_argument("--concurrent", type=int, help="trials at once (overrides tune.concurrent)")
    parser.add_argument("--name", help="sweep name: MLflow parent run and Tune experiment")
    parser.add_argument("--resume", action="store_true", help="continue the sweep --name")
    parser.add_argument(
        "--recipe-dir",
        type=Path,
        help="where the best config is written as <name>.yaml (overrides tune.recipe_dir, "
        "default configs/tuned under the working directory)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed override for every trial, e.g. --set optim.epochs=10",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`vavl-sweep`: a sweep over one of the named spaces of `vavl.spaces`."""
    from vavl.spaces import SPACES

    args = parse_args("Sweep a named search space with Ray Tune + Optuna.", argv, spaces=[*SPACES])
    return _sweep(SPACES[args.space], args)


def sweep_main(space: SearchSpace, description: str, argv: list[str] | None = None) -> int:
    return _sweep(space, parse_args(description, argv))


def _sweep(space: SearchSpace, args: argparse.Namespace) -> int:
    flags = {
        "data.store": args.store,
        "tune.trials": args.trials,
        "tune.concurrent": args.concurrent,
    }
    overrides = [*args.set, *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from vavl import tracking
    from vavl.store import StoreError
    from vavl.sweep import run_sweep

    try:
        name = args.name or f"{cfg.name}-sweep"
        result = run_sweep(
            cfg,
            space,
            name=name,
            trials=cfg.tune.trials,
            concurrent=cfg.tune.concurrent,
            resume=args.resume,
            recipe_dir=args.recipe_dir,
        )
    except (ConfigError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metric = cfg.train.selection_key  # what the trial scores are
    print()
    print(
        console.table(
            ["trial", metric, *space, "epochs", "state"],
            [
                [r.trial_id, r.score, *(r.params[p] for p in space), r.epochs, r.state]
                for r in result.trials
            ],
        )
    )
    print()
    names = sorted({k.split("/")[-1] for k in result.test if not k.endswith("/n")})
    print(
        console.table(
            ["split", "condition", *names], console.metrics_by_condition(result.test, "test", names)
        )
    )
    print(f"\nbest trial {result.best.trial_id}: {result.best.params}")
    print(f"best recipe: {result.best_config_path}")
    print(f"MLflow parent run: {result.parent_run_id}")
    print(f"Open the results: {tracking.ui_command(result.tracking_uri)}")
    return 0
