"""Evaluate a trained model on a store split: metrics per condition with 95% bootstrap intervals,
and the missing-modality robustness curve, logged as a new MLflow run.

    python pipelines/evaluate.py --model runs:/<run_id>/model --store data/demo/store \\
        [--split test] [--missing-share 0,0.25,0.5,0.75,1] [--drop visual,audio,either] \\
        [--seed 0] [--bootstrap 1000]

On a running cluster:

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "..."}}' \\
        -- python pipelines/evaluate.py --model models:/vavl-demo/1 --store s3://bucket/store

The protocol is defined in `vavl.robustness` (one curve per dropped modality requested). The new
run is tagged `vavl.evaluates=<training run id>` when the model URI names a run, and lands in the
training run's experiment (else the config's train.experiment, or --experiment).
"""

from __future__ import annotations

import argparse
import sys

from vavl import cli, console

# torch, Ray and MLflow are imported in `run`, once the arguments are known to be sound.
DROPS = ("visual", "audio", "either")  # vavl.robustness.DROPS, without importing torch

DESCRIPTION = """Evaluate a trained model on one split of a feature store.

Reads: the model (an MLflow runs:/ or models:/ URI, or a checkpoint directory, with the config
and normalisation statistics saved with it) and the --split rows of the --store.
Computes: accuracy, macro/micro F1 and UAR (CCC for attribute tasks) per condition (av, audio,
visual) with 95% bootstrap intervals, and the missing-modality robustness curve: the share of
paired utterances that lose a modality against each metric, one curve per --drop.
Writes: a new MLflow run (MLFLOW_TRACKING_URI, else ./mlflow.db) in --experiment if given,
else the training run's experiment, else the model config's train.experiment; it is named
eval-<training run name>-<split> and tagged vavl.evaluates=<training run id> when the model
URI names a run, and holds the metrics, the curve (step = share in percent), evaluation.txt,
robustness.csv and the plots. The same tables are printed, with the run id. Neither the model
nor the store is changed."""
EXAMPLES = (
    "vavl-evaluate --model runs:/<run_id>/model --store data/demo/store",
    "vavl-evaluate --model models:/vavl-demo/1 --store s3://bucket/store --split dev",
    "vavl-evaluate --model runs:/<run_id>/model --store data/demo/store --drop either "
    "--missing-share 0,0.5,1 --bootstrap 200",
)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(DESCRIPTION, EXAMPLES)
    parser.add_argument(
        "--model",
        required=True,
        help="runs:/<run_id>/model, models:/<name>/<version> or a checkpoint directory",
    )
    parser.add_argument("--store", required=True, help="feature store path or s3:// URI")
    parser.add_argument("--split", default="test", help="store split to evaluate")
    parser.add_argument(
        "--missing-share",
        type=_floats,
        help="shares of paired utterances that lose a modality (default: 0,0.25,0.5,0.75,1)",
    )
    parser.add_argument(
        "--drop",
        default="visual,audio",
        help="dropped modality per curve: visual, audio and/or either (comma-separated)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the drop plan and bootstrap")
    parser.add_argument(
        "--bootstrap", type=int, help="bootstrap resamples for the 95%% intervals (default: 1000)"
    )
    parser.add_argument(
        "--stats-from",
        help="store whose train statistics normalise the input (default: the statistics "
        "saved with the model)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="utterances per batch (default: the model config's optim.batch_size)",
    )
    parser.add_argument(
        "--experiment",
        help="MLflow experiment of the evaluation run (default: the training run's, else the "
        "model config's train.experiment)",
    )
    cli.add_quiet(parser, "utterances predicted in each pass")
    args = parser.parse_args(argv)
    args.drops = [d.strip() for d in args.drop.split(",") if d.strip()]
    problem = _argument_problem(args)
    if problem:
        parser.error(problem)  # exit 2, before any heavy import
    return args


def _argument_problem(args: argparse.Namespace) -> str | None:
    unknown = [d for d in args.drops if d not in DROPS]
    if unknown or not args.drops:
        return f"--drop {args.drop!r}: each must be one of {', '.join(DROPS)}"
    if args.missing_share is not None and not all(0 <= s <= 1 for s in args.missing_share):
        return f"--missing-share {args.missing_share}: shares lie in [0, 1]"
    if args.bootstrap is not None and args.bootstrap < 1:
        return f"--bootstrap {args.bootstrap}: needs at least 1 resample"
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size {args.batch_size}: must be >= 1"
    return None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 on a bad argument, model or store (named on stderr), 1 on a bug."""
    args = parse_args(argv)
    # A ValueError from the model or the store is an input that cannot be evaluated.
    return cli.run(lambda: run(args), bad_input=(ValueError,))


def run(args: argparse.Namespace) -> int:
    from vavl import storage, tracking
    from vavl.inference import open_model
    from vavl.robustness import DEFAULT_RESAMPLES, DEFAULT_SHARES, evaluate_store, log_report

    loaded = open_model(args.model, stats_from=args.stats_from)
    report = evaluate_store(
        loaded,
        args.store,
        split=args.split,
        batch_size=args.batch_size,
        shares=args.missing_share if args.missing_share is not None else DEFAULT_SHARES,
        drops=args.drops,
        seed=args.seed,
        resamples=args.bootstrap if args.bootstrap is not None else DEFAULT_RESAMPLES,
        progress=console.Progress(quiet=args.quiet),
    )
    experiment, name = _run_home(loaded.run_id, args.experiment, loaded.config.train.experiment)
    run_id = log_report(
        report,
        model_uri=args.model,
        store=storage.redact(args.store),
        experiment=experiment,
        training_run_id=loaded.run_id,
        run_name=f"eval-{name}-{args.split}",
    )
    where = storage.redact(args.store)
    print(f"\n{args.split} of {where} (intervals resample {report.resampling()})")
    print(report.conditions_table())
    print(f"\nmissing-modality protocol over the paired utterances (seed {args.seed})")
    print(report.robustness_table())
    print(f"\nMLflow run {run_id} in experiment {experiment!r}")
    print(f"Open the results: {tracking.ui_command()}")
    return 0


def _run_home(training_run_id: str | None, asked: str | None, default: str) -> tuple[str, str]:
    """The experiment of the evaluation run and a name for it, from the training run if known."""
    from vavl import tracking

    if training_run_id is None:
        return asked or default, "model"
    client = tracking.client()
    run = client.get_run(training_run_id)
    experiment = asked or client.get_experiment(run.info.experiment_id).name
    return experiment, run.info.run_name or training_run_id[:8]


if __name__ == "__main__":
    sys.exit(main())
