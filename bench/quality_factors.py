"""Short in-process experiments that separate the causes of VAVL's quality gap (no Ray, 1 process).

    .venv/bin/python bench/quality_factors.py --store data/quality/unpaired-0/store
        [--config configs/synthetic-large.yaml] [--variants baseline,global,...] [--epochs N]
        [--seeds 0] [--out data/quality/factors.json]

Each variant is a list of `--set`-style overrides on the recipe. Per variant and seed it trains
VAVL with the library's own pieces (`build_model`, `build_optimizer`, `vavl.schedule`,
`phase_losses`, `predict`, `split_metrics`) on the store's train split minus a held-out share of
each training speaker's utterances, selects the epoch by the recipe's (smoothed) selection
metric on dev, and reports macro-F1 on: the training utterances, the held-out utterances of
training speakers ("seen spk"), and the test split (unseen speakers), per condition. Beside them:
logistic regression and an MLP (scikit-learn) on each utterance's pooled frame means, globally
and per-speaker centred, so every figure has a plain baseline under the same normalisation.

Frames are read once into memory with the store's own reader (`collate`), under each variant's
`data.normalize`. What a variant cannot change here: DDP (one process; the recipe's batch size is
the global batch). The figures live in BENCHMARKS.md (quality factors), written by this script.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from record import cpu_model, record, run_alone

from vavl.builders import build_model, build_optimizer
from vavl.config import CONDITIONS, DataConfig, ExperimentConfig, load_config
from vavl.evaluate import predict, split_metrics
from vavl.objectives import TaskObjective
from vavl.phases import phase_losses
from vavl.runtime import seed_everything
from vavl.schedule import LrSchedule, is_better, plateau_update, smoothed
from vavl.store import FeatureStore, collate
from vavl.store.source import read_shard
from vavl.train.driver import bind_store

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
HELD_OUT_SHARE = 0.15  # of each training speaker's utterances, scored as "seen speakers"

VARIANTS: dict[str, list[str]] = {
    # The recipe as it was before the quality fixes: global normalisation, constant lr, no clip.
    "paper-like": [
        "data.normalize=global",
        "optim.schedule=constant",
        "optim.warmup_epochs=0",
        "optim.grad_clip=null",
    ],
    "global-norm": ["data.normalize=global"],
    "speaker-norm": ["data.normalize=speaker"],
    "speaker-norm, constant lr": [
        "data.normalize=speaker",
        "optim.schedule=constant",
        "optim.warmup_epochs=0",
        "optim.grad_clip=null",
    ],
    "speaker-norm, lr 3e-4": ["data.normalize=speaker", "optim.lr=3.0e-4"],
    "speaker-norm, dropout 0.3": ["data.normalize=speaker", "model.dropout=0.3"],
    "speaker-norm, recon 0": ["data.normalize=speaker", "loss.reconstruction_weight=0"],
    "no normalisation": ["data.normalize=none"],
}


def read_split(store: FeatureStore, split: str) -> pa.Table:
    """Every row of one split, in shard order, as one table."""
    fs, _ = store._fs, store._root
    return pa.concat_tables(
        [t for path in store.shard_paths(split) for t in read_shard(fs, path, block_rows=1024)]
    )


def held_out_rows(table: pa.Table, share: float, seed: int) -> np.ndarray:
    """Boolean (N,): a `share` of each speaker's rows, chosen at random."""
    rng = np.random.default_rng(seed)
    speakers = np.asarray(table.column("speaker").to_pylist())
    held = np.zeros(len(speakers), dtype=bool)
    for speaker in np.unique(speakers):
        rows = np.flatnonzero(speakers == speaker)
        held[rng.choice(rows, size=round(share * len(rows)), replace=False)] = True
    return held


def batches(table: pa.Table, spec, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(table.num_rows) if rng is not None else np.arange(table.num_rows)
    for start in range(0, table.num_rows, batch_size):
        yield collate(table.take(order[start : start + batch_size]), spec)


def train_variant(
    cfg: ExperimentConfig, store: FeatureStore, tables: dict[str, pa.Table], seed: int
) -> dict[str, float]:
    spec = store.batch_spec(
        normalize=cfg.data.normalize, min_speaker_utterances=cfg.data.speaker_min_utterances
    )
    seed_everything(seed)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    objective = TaskObjective.from_config(cfg.task)
    steps_per_epoch = -(-tables["train"].num_rows // cfg.optim.batch_size)
    schedule = LrSchedule.from_config(cfg.optim, steps_per_epoch)
    scale, wait = 1.0, 0
    rng = np.random.default_rng(seed)
    metric = cfg.train.selection_metric
    window = cfg.train.selection_smoothing
    history: list[float] = []
    best: tuple[float, dict[str, float], dict] | None = None
    step = 0
    for epoch in range(1, cfg.optim.epochs + 1):
        model.train()
        for batch in batches(tables["train"], spec, cfg.optim.batch_size, rng):
            step += 1
            for group in optimizer.param_groups:
                group["lr"] = cfg.optim.lr * scale * schedule.multiplier(step)
            losses = phase_losses(model, batch, objective, cfg.loss.reconstruction_weight)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            if cfg.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
        dev = evaluate(model, cfg, spec, objective, tables, "dev")
        history.append(dev[metric])
        score = smoothed(history, window)
        improved = is_better(score, None if best is None else best[0], "max")
        if cfg.optim.schedule == "plateau":
            scale, wait = plateau_update(
                scale,
                wait,
                improved=improved,
                patience=cfg.optim.plateau_patience,
                floor=cfg.optim.min_lr_ratio,
            )
        if improved:
            best = (score, {"epoch": float(epoch), **dev}, copy.deepcopy(model.state_dict()))
    assert best is not None
    model.load_state_dict(best[2])
    out = dict(best[1])
    for split in ("test", "seen", "fit"):
        out.update(evaluate(model, cfg, spec, objective, tables, split))
    tail = history[len(history) // 2 :]
    out["dev_jump"] = float(np.max(np.abs(np.diff(tail)))) if len(tail) > 1 else 0.0
    return out


def evaluate(model, cfg, spec, objective, tables: dict[str, pa.Table], split: str) -> dict:
    preds = predict(model, batches(tables[split], spec, 64, None), objective, device=CPU)
    return split_metrics(preds, cfg.task, split)


def pooled_means(table: pa.Table, spec) -> dict[str, np.ndarray]:
    """Per modality (N, D) masked frame means under `spec`'s normalisation (NaN where absent)."""
    batch = collate(table, spec)
    out = {}
    for modality in ("audio", "visual"):
        x, mask = getattr(batch, modality), getattr(batch, f"{modality}_mask")
        count = mask.sum(1, keepdim=True).clamp(min=1)
        mean = (x * mask.unsqueeze(-1)).sum(1) / count
        mean[~mask.any(1)] = float("nan")
        out[modality] = mean.numpy()
    return out


def baselines(store: FeatureStore, tables: dict[str, pa.Table], mode: str) -> dict[str, float]:
    """Test macro-F1 per condition of logistic regression and an MLP on pooled means."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from vavl.metrics import classification_metrics

    min_utterances = DataConfig().speaker_min_utterances  # the library's default
    spec = store.batch_spec(normalize=mode, min_speaker_utterances=min_utterances)
    k = len(store.class_names)
    feats = {s: pooled_means(tables[s], spec) for s in ("train", "dev", "test")}
    labels = {s: np.asarray(tables[s].column("label").to_pylist()) for s in feats}
    parts = {"av": ("audio", "visual"), "audio": ("audio",), "visual": ("visual",)}
    out: dict[str, float] = {}
    for condition, modalities in parts.items():
        data = {}
        for s in feats:
            x = np.hstack([feats[s][m] for m in modalities])
            keep = ~np.isnan(x).any(axis=1)
            data[s] = (x[keep], labels[s][keep])
        models = {
            "logreg": [LogisticRegression(C=c, max_iter=3000) for c in (0.01, 0.1, 1.0)],
            "mlp": [
                MLPClassifier((128,), alpha=a, max_iter=400, early_stopping=True, random_state=0)
                for a in (1e-3, 1e-1)
            ],
        }
        for name, candidates in models.items():
            fitted = [m.fit(*data["train"]) for m in candidates]

            def score(model, split: str, data=data) -> float:
                x, y = data[split]
                return classification_metrics(y, model.predict(x), k)["macro_f1"]

            chosen = max(fitted, key=lambda m: score(m, "dev"))
            out[f"{name}/{condition}"] = score(chosen, "test")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic-large.yaml"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="data/quality/factors.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    run_alone()
    torch.set_num_threads(2)
    store = FeatureStore.open(args.store)
    tables = {s: read_split(store, s) for s in ("train", "dev", "test")}
    held = held_out_rows(tables["train"], HELD_OUT_SHARE, seed=0)
    tables["seen"] = tables["train"].filter(pa.array(held))
    tables["train"] = tables["train"].filter(pa.array(~held))
    tables["fit"] = tables["train"].slice(0, min(600, tables["train"].num_rows))
    print(
        f"cpu: {cpu_model()}; store {args.store}: "
        + ", ".join(f"{s} {t.num_rows}" for s, t in tables.items())
    )
    results: dict[str, dict] = {}
    for mode in ("global", "speaker"):
        results[f"baselines ({mode} norm)"] = baselines(store, tables, mode)
        print(f"baselines ({mode}):", json.dumps(results[f"baselines ({mode} norm)"]))
    for name in args.variants.split(","):
        overrides = [*VARIANTS[name], *args.overrides]
        if args.epochs:
            overrides.append(f"optim.epochs={args.epochs}")
        cfg = bind_store(load_config(args.config, overrides), store)
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            scores = train_variant(cfg, store, tables, seed)
            scores["seconds"] = time.perf_counter() - started
            results[f"{name} / seed {seed}"] = scores
            row = " ".join(
                f"{c}: fit {scores[f'fit/{c}/macro_f1']:.3f}"
                f" seen {scores[f'seen/{c}/macro_f1']:.3f} test {scores[f'test/{c}/macro_f1']:.3f};"
                for c in CONDITIONS
            )
            print(
                f"{name} / seed {seed} (epoch {scores['epoch']:.0f}, dev jump "
                f"{scores['dev_jump']:.3f}, {scores['seconds']:.0f} s): {row}",
                flush=True,
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    record(f"quality factors ({Path(args.config).stem})", markdown(results, tables))


def markdown(results: dict[str, dict], tables: dict[str, pa.Table]) -> str:
    """The results as tables: baselines, then one row per variant and seed."""
    sizes = ", ".join(f"{split} {t.num_rows}" for split, t in tables.items())
    lines = [
        f"Rows: {sizes} (seen = held-out utterances of training speakers; fit = training rows).",
        "Test macro-F1 of the pooled-means baselines, per condition (av / audio / visual):",
        "",
        "| baseline | av | audio | visual |",
        "|---|---|---|---|",
    ]
    for name, scores in results.items():
        if name.startswith("baselines"):
            for model in ("logreg", "mlp"):
                cells = " | ".join(f"{scores[f'{model}/{c}']:.3f}" for c in CONDITIONS)
                lines.append(f"| {model}, {name.removeprefix('baselines ')} | {cells} |")
    lines += [
        "",
        "VAVL macro-F1 at the dev-selected epoch, fit / seen / test per condition; dev jump = the "
        "largest epoch-to-epoch move of the selection metric over the last half of training:",
        "",
        "| variant | epoch | dev jump | av | audio | visual |",
        "|---|---|---|---|---|---|",
    ]
    for name, scores in results.items():
        if name.startswith("baselines"):
            continue
        cells = " | ".join(
            "/".join(f"{scores[f'{part}/{c}/macro_f1']:.3f}" for part in ("fit", "seen", "test"))
            for c in CONDITIONS
        )
        lines.append(f"| {name} | {scores['epoch']:.0f} | {scores['dev_jump']:.3f} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
