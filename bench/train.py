"""Training throughput against the bare step: is the trainer as fast as `train_step` alone?
A measurement, not a test.

    python bench/train.py [--models demo,paper] [--workers 1,2] [--utterances 160]
                          [--epochs 3] [--batch 8] [--bucket-batches none,16] [--precision fp32]
                          [--gpus-per-worker 0] [--no-record]

For each model size (`bench/model.py`'s MODELS: demo, default, paper) the bench writes a
synthetic store at that size's feature dims (utterances of 1.5-4 s: 75-200 audio frames at
50/s, 45-120 visual frames at 30/s), then
- trains it with `vavl.train.fit` for each worker count (Ray Train DDP, the recipe's data path,
  length bucketing as given) and reads the last epoch's samples/s (every rank's samples; the
  first epoch pays Ray Data's start-up and fills each worker's in-memory share), data-wait
  share, padding share and peak RSS per worker;
- times the bare step, in this process without Ray: `train_step` on the batches the trainer's
  rank 0 of a 1-worker run would take in its second epoch (same store, batch size, bucketing and
  torch threads), so the ratio compares equal work.

Writes BENCHMARKS.md ("trainer throughput (<models>)"). Run it alone: it takes every core for
minutes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from model import MODELS, device_sync
from record import record, run_alone

from vavl import console
from vavl.builders import build_batch_spec, build_model, build_optimizer
from vavl.config import ExperimentConfig, validate_config
from vavl.objectives import TaskObjective
from vavl.runtime import ensure_ray, resolve_precision
from vavl.store import FeatureStore, ingest_corpus_folder
from vavl.store.cache import SplitCache
from vavl.synthetic import write_corpus
from vavl.train import bind_store, fit
from vavl.train.step import StepSettings, train_step


def store_for(root: Path, model: str, utterances: int) -> str:
    dims = validate_config({"model": MODELS[model]}).model
    corpus = root / f"{model}-corpus"
    write_corpus(
        corpus,
        utterances=utterances,
        seed=0,
        audio_dim=dims.audio_dim,
        visual_dim=dims.visual_dim,
        overwrite=True,
    )
    out = root / f"{model}-store"
    ingest_corpus_folder(corpus, str(out), overwrite=True, shard_rows=64)
    return str(out)


def config(
    model: str, store: str, root: Path, args: argparse.Namespace, workers: int, bucket: int | None
) -> ExperimentConfig:
    return validate_config(
        {
            "name": f"bench-{model}",
            "model": MODELS[model],
            "optim": {"epochs": args.epochs, "batch_size": args.batch},
            "data": {"store": store, "bucket_batches": bucket},
            "train": {
                "workers": workers,
                "cpus_per_worker": 0.5,
                "gpus_per_worker": args.gpus_per_worker,
                "precision": args.precision,
                "storage_path": str(root / "runs"),
                "experiment": "bench-train",
                "patience": None,
            },
        }
    )


def bare_samples_per_s(cfg: ExperimentConfig, store: FeatureStore, threads: int) -> float:
    """samples/s of `train_step` alone over a 1-worker run's second epoch (all its batches)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if cfg.train.gpus_per_worker else "cpu")
    cfg = bind_store(cfg, store)
    model = build_model(cfg).to(device).train()
    optimizer = build_optimizer(cfg, model)
    objective = TaskObjective.from_config(cfg.task)
    precision = resolve_precision(cfg.train.precision, device)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    settings = StepSettings(precision, cfg.loss.reconstruction_weight, cfg.optim.grad_clip)
    sync = device_sync(device)
    spec = build_batch_spec(cfg, store)
    cache = SplitCache(
        store.dataset("train"), spec, keep=True, bucket_batches=cfg.data.bucket_batches
    )
    batches = list(cache.batches(batch_size=cfg.optim.batch_size, shuffle=True, seed=2))
    batches = [b.to(device) for b in batches]
    train_step(model, optimizer, scaler, batches[-1], objective, settings)  # warm-up
    sync()
    start = time.perf_counter()
    for batch in batches:  # the whole pass, as the trainer's samples/s counts its epoch
        train_step(model, optimizer, scaler, batch, objective, settings)
    sync()
    return sum(len(b.ids) for b in batches) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="demo,paper")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--utterances", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--bucket-batches", default="none,16", help="data.bucket_batches values, none = off"
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    run_alone()
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
    worker_counts = [int(w) for w in args.workers.split(",")]
    buckets = [None if b == "none" else int(b) for b in args.bucket_batches.split(",")]
    ensure_ray()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for model in models:
            store_uri = store_for(root, model, args.utterances)
            store = FeatureStore.open(store_uri)
            for workers, bucket in itertools.product(worker_counts, buckets):
                cfg = config(model, store_uri, root, args, workers, bucket)
                result = fit(cfg, evaluate_test=False, log_model=False, show_progress=False)
                last = result.history[-1]
                trainer = last["train/samples_per_s"] * workers
                cores = len(os.sched_getaffinity(0))
                bare = bare_samples_per_s(cfg, store, max(1, cores // workers)) * workers
                rows.append(
                    [
                        model,
                        workers,
                        bucket or "-",
                        f"{trainer:.2f}",
                        f"{bare:.2f}",
                        f"{trainer / bare:.0%}",
                        f"{last['train/data_wait_share']:.3f}",
                        f"{last['train/padding_share']:.2f}",
                        f"{last['train/peak_rss_mb']:.0f}",
                    ]
                )
    header = ["model", "workers", "buckets", "trainer samples/s", "bare step samples/s", "ratio"]
    header += ["data wait share", "padding share", "peak RSS/worker MB"]
    table = console.table(header, rows)
    setting = (
        f"{args.utterances} utterances, batch {args.batch} per worker, {args.epochs} epochs "
        f"(last one reported), precision {args.precision}, buckets = data.bucket_batches; "
        "bare step: the same batches in one process, the cores shared "
        "as the workers share them, times the worker count (an upper bound for DDP)"
    )
    print(setting)
    print(table)
    if not args.no_record:
        # One section per model set: a paper-size run does not replace the demo-size figures.
        section = f"trainer throughput ({', '.join(models)})"
        record(section, f"{setting}.\n\n```\n{table}\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
