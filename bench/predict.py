"""Batch prediction throughput (utterances/s) with Ray Data, 1 and 2 model actors.

    python bench/predict.py --dims demo --utterances 600 --actors 1,2
    python bench/predict.py --dims paper --utterances 64 --actors 1,2

Per setting: a synthetic corpus and a float16 store of it (vavl.synthetic, vavl.store; not
timed), a model with random weights at the matching size (demo: configs/demo.yaml, 64-d audio,
48-d visual, d_model 64; paper: the config defaults, 1024-d audio, 1408-d visual, d_model 512,
33M parameters) saved as a checkpoint. Then `vavl.inference.predict_store` over every split of
the store, once per actor count, on a local Ray cluster of `--cpus` CPUs: each actor gets
(cpus - 0.25) / actors CPUs (capped at 1; the 0.25 is left for the read tasks) and one torch
thread. "job s" is the whole job, actor start-up included, as a user sees it; "utt/s" is
utterances over job seconds. "in-process" answers the same rows in this process (pyarrow shard
reads, `answer_table`, one batch at a time, torch's default threads): the floor Ray Data's
overhead is measured against. Not a test: the numbers vary with the machine and its load.
The job times include starting the actors (a fresh Python process importing torch and vavl,
then the model from the object store), which is most of a small job's time.

Writes BENCHMARKS.md ("batch prediction (<dims> dims)").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from record import record, run_alone

DIMS = {"demo": (64, 48), "paper": (1024, 1408)}
REPO = Path(__file__).resolve().parents[1]


def make_store(root: Path, dims: str, utterances: int) -> str:
    from vavl.store import ingest_corpus_folder
    from vavl.synthetic import write_corpus

    audio_dim, visual_dim = DIMS[dims]
    corpus = root / "corpus"
    write_corpus(
        corpus,
        utterances=utterances,
        audio_dim=audio_dim,
        visual_dim=visual_dim,
        unpaired_share=0.3,
        seed=0,
    )
    ingest_corpus_folder(
        corpus,
        str(root / "store"),
        shard_rows=64,
    )
    return str(root / "store")


def make_checkpoint(root: Path, dims: str, store_uri: str) -> str:
    import torch

    from vavl.builders import build_model, build_optimizer
    from vavl.checkpoint import TrainingState, save_checkpoint
    from vavl.config import load_config
    from vavl.store import FeatureStore

    store = FeatureStore.open(store_uri)
    recipe = REPO / "configs" / "demo.yaml" if dims == "demo" else None
    overrides = [
        f"data.store={store_uri}",
        f"model.audio_dim={store.audio_dim}",
        f"model.visual_dim={store.visual_dim}",
    ]
    cfg = load_config(recipe, overrides)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: d_model {cfg.model.d_model}, {params / 1e6:.1f}M parameters")
    save_checkpoint(
        root / "ckpt",
        model=model,
        optimizer=build_optimizer(cfg, model),
        scaler=None,
        state=TrainingState(),
        config=cfg,
        meta={},
    )
    return str(root / "ckpt")


def in_process(loaded, store_uri: str) -> tuple[int, float]:
    import pyarrow.parquet as pq

    from vavl.inference import answer_table
    from vavl.store import FeatureStore

    store = FeatureStore.open(store_uri)
    spec = loaded.batch_spec(frame_dtype=store.frame_dtype, task_kind=store.task_kind)
    size = loaded.config.optim.batch_size
    rows, started = 0, time.perf_counter()
    for split in store.splits():
        for path in store.shard_paths(split):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
                table = answer_table(loaded.model, pq_table(batch), spec, loaded.config.task)
                rows += table.num_rows
    return rows, time.perf_counter() - started


def pq_table(batch):
    import pyarrow as pa

    return pa.Table.from_batches([batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", choices=sorted(DIMS), default="demo")
    parser.add_argument("--utterances", type=int, default=600)
    parser.add_argument("--actors", default="1,2")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    run_alone()

    import ray

    from vavl import console
    from vavl.inference import PredictSettings, open_model, predict_store
    from vavl.runtime import ensure_ray

    ensure_ray(num_cpus=args.cpus)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store_uri = make_store(root, args.dims, args.utterances)
        loaded = open_model(make_checkpoint(root, args.dims, store_uri))
        count, seconds = in_process(loaded, store_uri)
        rows.append(["in-process", "-", count, f"{seconds:.2f}", f"{count / seconds:.1f}"])
        for actors in [int(a) for a in args.actors.split(",")]:
            cpus = min(1.0, (args.cpus - 0.25) / actors)
            settings = PredictSettings(actors=actors, cpus_per_actor=cpus)
            out = str(root / f"predictions-{actors}.parquet")
            report = predict_store(loaded, store_uri, out, settings=settings)
            rows.append(
                [
                    f"{actors} actor(s)",
                    f"{cpus:.2f}",
                    report.rows,
                    f"{report.seconds:.2f}",
                    f"{report.utterances_per_s:.1f}",
                ]
            )
    ray.shutdown()
    setting = (
        f"{args.dims} dims, {args.utterances} utterances, batch {loaded.config.optim.batch_size}, "
        f"a local Ray cluster of {args.cpus} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    )
    table = console.table(["mode", "CPUs/actor", "utterances", "job s", "utt/s"], rows)
    print(f"\n{setting}\n{table}")
    record(f"batch prediction ({args.dims} dims)", f"{setting}.\n\n```\n{table}\n```")


if __name__ == "__main__":
    main()
