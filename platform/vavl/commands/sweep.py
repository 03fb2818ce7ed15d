"""`vavl-sweep --space NAME`, and the command line shared by the sweep scripts in tuning/: each
states a search space and calls `sweep_main`."""

from __future__ import annotations

import argparse
from pathlib import Path

# Only light modules here: a bad recipe or flag fails before torch, Ray and MLflow are imported
# (in `_sweep`, after the config is validated).
from vavl import cli, console
from vavl.search_space import SearchSpace

DESCRIPTION = """Sweep a named search space with Ray Tune: Optuna's TPE proposes, ASHA stops poor
trials early, every trial is a Ray Train DDP run of the recipe. MLflow gets a parent run with one
nested run per trial; the best trial is evaluated once on the test split and its config is
written as a ready recipe (--recipe-dir)."""
EXAMPLES = (
    "%(prog)s --config demo --store data/demo/store --trials 8 --concurrent 2",
    "%(prog)s --config demo --name demo-weights --resume",
    "%(prog)s --config demo --set optim.epochs=10 --print-config",
)


def parse_args(
    description: str, argv: list[str] | None, *, spaces: list[str] | None = None
) -> argparse.Namespace:
    parser = cli.parser(description, EXAMPLES)
    if spaces:
        parser.add_argument(
            "--space", choices=spaces, default=spaces[0], help="search space (vavl.spaces)"
        )
    cli.add_recipe_arguments(parser, "fixed override for every trial, e.g. --set optim.epochs=10")
    parser.add_argument(
        "--store", help="feature store path or s3:// URI (default: the recipe's data.store)"
    )
    parser.add_argument(
        "--trials", type=int, help="trials in all (default: the recipe's tune.trials)"
    )
    parser.add_argument(
        "--concurrent", type=int, help="trials at once (default: the recipe's tune.concurrent)"
    )
    parser.add_argument(
        "--name",
        help="sweep name: the MLflow parent run, the Tune experiment under tune.storage_path "
        "and the best recipe's file name (default: <recipe name>-sweep)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep of this --name (the name of its MLflow parent "
        "run): unfinished trials go on, finished ones are kept",
    )
    parser.add_argument(
        "--recipe-dir",
        type=Path,
        help="where the best config is written as <name>.yaml (default: the recipe's "
        "tune.recipe_dir, configs/tuned under the working directory)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`vavl-sweep`: a sweep over one of the named spaces of `vavl.spaces`."""
    from vavl.spaces import SPACES

    args = parse_args(DESCRIPTION, argv, spaces=[*SPACES])
    return cli.run(lambda: _sweep(SPACES[args.space], args))


def sweep_main(space: SearchSpace, description: str, argv: list[str] | None = None) -> int:
    args = parse_args(description, argv)
    return cli.run(lambda: _sweep(space, args))


def _sweep(space: SearchSpace, args: argparse.Namespace) -> int:
    flags = {
        "data.store": args.store,
        "tune.trials": args.trials,
        "tune.concurrent": args.concurrent,
    }
    cfg = cli.recipe(args, flags)
    if args.print_config:
        return cli.print_config(cfg)
    from vavl import tracking
    from vavl.sweep import run_sweep

    result = run_sweep(
        cfg,
        space,
        name=args.name or f"{cfg.name}-sweep",
        trials=cfg.tune.trials,
        concurrent=cfg.tune.concurrent,
        resume=args.resume,
        recipe_dir=args.recipe_dir,
    )
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
