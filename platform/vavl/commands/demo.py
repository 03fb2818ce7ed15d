"""`make demo`: synthesise a corpus, ingest it, train VAVL with 2 DDP workers, and summarise.

python pipelines/demo.py [--out data/demo] [--utterances 600] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vavl import cli, console, tracking
from vavl.demo import DemoSettings, demo_configs, run_demo
from vavl.spaces import LOSS_WEIGHTS

DESCRIPTION = """The demo (`make demo`): synthesise a corpus with known ideal scores, ingest it
into a feature store, train VAVL with 2 DDP workers, sweep the loss weights (unless --no-sweep),
evaluate the best model, and print a summary beside the ideal scores. Everything is written
under --out; the runs are in MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db)."""
EXAMPLES = (
    "vavl-demo",
    "vavl-demo --no-sweep --set optim.epochs=3",
    "vavl-demo --set optim.epochs=3 --print-config",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(DESCRIPTION, EXAMPLES)
    parser.add_argument(
        "--out", type=Path, default=DemoSettings.out, help="folder for corpus, store and runs"
    )
    parser.add_argument(
        "--utterances", type=int, default=DemoSettings.utterances, help="corpus size"
    )
    parser.add_argument(
        "--seed", type=int, default=DemoSettings.seed, help="seeds the synthetic corpus"
    )
    cli.add_set_argument(parser, "override a field of the demo recipe, e.g. --set optim.epochs=3")
    cli.add_print_config(parser)
    parser.add_argument("--no-sweep", action="store_true", help="skip the loss-weights sweep")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = DemoSettings(
        out=args.out,
        utterances=args.utterances,
        seed=args.seed,
        overrides=args.set,
        sweep_space=None if args.no_sweep else LOSS_WEIGHTS,
    )
    return cli.run(lambda: _demo(settings, print_config=args.print_config))


def _demo(settings: DemoSettings, *, print_config: bool) -> int:
    if print_config:
        return cli.print_config(demo_configs(settings)[0])
    report = run_demo(settings)

    result, ideal = report.training, report.corpus.ideal
    names = ["accuracy", "macro_f1", "uar"]
    rows = []
    for condition in report.conditions:  # only those the store has
        dev = [result.dev.get(f"dev/{condition}/{n}") for n in names]
        test = [result.test.get(f"test/{condition}/{n}") for n in names]
        best = ideal.get(condition, {})
        rows.append([condition, *dev, *test, *(best.get(n) for n in names)])
    print("\n== summary")
    headers = ["condition", *(f"dev {n}" for n in names), *(f"test {n}" for n in names)]
    print(console.table([*headers, *(f"ideal {n}" for n in names)], rows))
    print()
    print(
        console.table(
            ["", ""],
            [
                ["store", f"{report.ingest.store} (manifest {report.ingest.manifest_id})"],
                ["training run", f"{result.run_name} ({result.run_id})"],
                ["selected on", result.selection_metric],
                ["best epoch", result.best_epoch],
                ["model", result.model_uri],
                *_sweep_rows(report),
                *[[f"{stage} (s)", seconds] for stage, seconds in report.stage_seconds.items()],
            ],
        )
    )
    if report.robustness is not None:
        resampled = report.robustness.resampling()
        print(f"\n== best model on the test split, 95% bootstrap intervals ({resampled})")
        print(report.robustness.conditions_table())
        print("\n== missing-modality robustness (share of test utterances losing a modality)")
        print(report.robustness.robustness_table())
    print(f"\nOpen the results: {tracking.ui_command(result.tracking_uri)}")
    return 0


def _sweep_rows(report) -> list[list[object]]:
    sweep = report.sweep
    if sweep is None:
        return []
    metric = report.config.train.selection_key
    return [
        ["sweep parent run", f"{sweep.name} ({sweep.parent_run_id})"],
        [
            "best weights",
            ", ".join(f"{k.split('.')[-1]}={v:.3g}" for k, v in sweep.best.params.items()),
        ],
        [f"best {metric}", sweep.best.score],
        [
            f"best trial test {'/'.join(report.conditions)}",
            " / ".join(
                f"{sweep.test.get(f'test/{c}/macro_f1', float('nan')):.3f}"
                for c in report.conditions
            ),
        ],
        ["trials stopped early", sum(t.state == "stopped early" for t in sweep.trials)],
    ]


if __name__ == "__main__":
    sys.exit(main())
