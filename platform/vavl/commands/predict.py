"""Batch prediction with Ray Data: a trained model answers every utterance of a store or folders.

    python pipelines/predict.py --model runs:/<run_id>/model --store data/demo/store \\
        --split test --out data/demo/predictions.parquet [--actors 2] [--gpus-per-actor 1]
    python pipelines/predict.py --model models:/vavl-demo/1 --audio feats/audio \\
        --visual feats/visual [--labels labels.csv] --out s3://bucket/predictions.parquet

On a running cluster:

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "..."}}' \\
        -- python pipelines/predict.py --model runs:/<run_id>/model --store s3://bucket/store \\
        --out s3://bucket/predictions.parquet --actors 4

The model is an MLflow URI (runs:/, models:/) or a checkpoint directory. Each utterance is
answered with the modalities it has (fusion where both, else its branch). Normalisation uses the
model's training statistics (see `vavl.inference`; `--stats-from STORE` names them explicitly).
Rows that cannot be scored are written to <out>.rejects.parquet with their reason.
"""

from __future__ import annotations

import argparse
import sys

# Only light modules here: torch, Ray and MLflow are imported in `run`, once the arguments are
# known to be sound.
from vavl import cli, console

DESCRIPTION = """Batch prediction with Ray Data: a trained model answers every utterance of a
feature store (or of folders of .npy features), each with the modalities it has (fusion where
both, else its branch). Writes one Parquet file (--out, local or s3://) with a row per
utterance, the rows that cannot be scored with their reason to <out>.rejects.parquet, and
prints a summary."""
EXAMPLES = (
    "vavl-predict --model runs:/<run_id>/model --store data/demo/store --split test "
    "--out data/demo/predictions.parquet",
    "vavl-predict --model models:/vavl-demo/1 --audio feats/audio --visual feats/visual "
    "--out s3://bucket/predictions.parquet --actors 4",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(DESCRIPTION, EXAMPLES)
    parser.add_argument(
        "--model",
        required=True,
        help="runs:/<run_id>/model, models:/<name>/<version> or a checkpoint directory",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--store", help="feature store path or s3:// URI (or --audio/--visual)")
    source.add_argument("--audio", help="folder of <id>.npy audio features (with --visual)")
    parser.add_argument(
        "--visual", help="folder of <id>.npy visual features, may be empty (required with --audio)"
    )
    parser.add_argument(
        "--labels",
        help="CSV whose FileName column lists the ids to answer, with --audio (default: every "
        "file in the folders)",
    )
    parser.add_argument("--split", help="store split to answer (default: every split)")
    parser.add_argument("--out", required=True, help="output Parquet file, local or s3://")
    parser.add_argument(
        "--stats-from",
        help="store whose train statistics normalise the input (default: the statistics "
        "saved with the model)",
    )
    parser.add_argument("--actors", type=int, default=1, help="model replicas (Ray actors)")
    parser.add_argument(
        "--gpus-per-actor", type=float, default=0.0, help="GPUs per replica, 0 = CPU"
    )
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per replica")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="utterances per batch (default: the model config's optim.batch_size)",
    )
    cli.add_quiet(parser, "utterances answered")
    args = parser.parse_args(argv)
    if args.audio and not args.visual:
        parser.error("--audio needs --visual (a folder that may be empty)")
    if args.visual and not args.audio:
        parser.error("--visual needs --audio; or use --store")
    if args.store and (args.labels or args.visual):
        parser.error("--labels and --visual go with --audio, not with --store")
    if args.split and not args.store:
        parser.error("--split selects a split of --store")
    problem = _resource_problem(args)
    if problem:
        parser.error(problem)  # exit 2, before any heavy import
    return args


def _resource_problem(args: argparse.Namespace) -> str | None:
    if args.actors < 1:
        return f"--actors {args.actors}: must be >= 1"
    if args.gpus_per_actor < 0 or args.cpus_per_actor <= 0:
        return (
            f"--gpus-per-actor {args.gpus_per_actor} must be >= 0 and "
            f"--cpus-per-actor {args.cpus_per_actor} > 0"
        )
    if args.batch_size is not None and args.batch_size < 1:
        return f"--batch-size {args.batch_size}: must be >= 1"
    return None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 2 on a bad argument, model or input (named on stderr), 1 on a bug."""
    args = parse_args(argv)
    return cli.run(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from vavl.inference import (
        PredictSettings,
        open_model,
        predict_folders,
        predict_store,
    )
    from vavl.runtime import ensure_ray

    settings = PredictSettings(
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
    )
    settings.check()
    loaded = open_model(args.model, stats_from=args.stats_from)
    ensure_ray()
    progress = console.Progress(quiet=args.quiet)
    if args.store:
        report = predict_store(
            loaded, args.store, args.out, split=args.split, settings=settings, progress=progress
        )
    else:
        report = predict_folders(
            loaded,
            args.audio,
            args.visual,
            args.out,
            labels=args.labels,
            settings=settings,
            progress=progress,
        )
    print()
    print(console.table(["", ""], report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
