"""How stable a recipe's training is: the demo corpus trained with several seeds.

    python bench/stability.py [--config configs/demo.yaml] [--seeds 0,1,2] [--set k=v ...]

Makes the `make demo` corpus (600 synthetic utterances, 12 speakers) under bench/results/, trains
the recipe once per seed (`vavl.multiseed.train_seeds`, 2 DDP workers, as
`pipelines/train.py --seeds` does) and reports per seed the largest epoch-to-epoch move of the dev
selection metric over the last half of training, the best epoch and the test scores; then the
test scores' mean and standard deviation across seeds. The model-quality issue's targets: a
largest move under 0.03 and a test av macro-F1 standard deviation under 0.02.

How much of the spread the test split itself makes: each seed's best checkpoint answers the test
split again (av condition), and the bench reports how often two seeds' answers differ, the
bootstrap standard deviation of one model's test macro-F1 over the test utterances, and the
spread that models of equal quality would show from their disagreements alone (two models that
disagree on a share d of n items, each disagreement as likely to favour either, differ in
accuracy by about sqrt(d / n); one model's spread is that over sqrt(2)).

Writes its figures to BENCHMARKS.md ("stability (demo corpus)"). Run it alone: it takes both
cores for minutes.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from record import record, run_alone

from vavl import console
from vavl.checkpoint import restore_model
from vavl.config import CONDITIONS, load_config
from vavl.demo import DemoSettings, ingest_demo_corpus, write_demo_corpus
from vavl.evaluate import predict_split
from vavl.metrics import classification_metrics
from vavl.multiseed import train_seeds
from vavl.runtime import ensure_ray
from vavl.store import FeatureStore

RESULTS = Path(__file__).resolve().parent / "results" / "stability"


def largest_late_move(history: list[dict[str, float]], metric: str) -> float:
    """The largest |score(e) - score(e-1)| over the epochs of the last half of training."""
    scores = [h[metric] for h in history]
    late = scores[len(scores) // 2 :]
    return max((abs(b - a) for a, b in itertools.pairwise(late)), default=0.0)


BOOTSTRAP_SAMPLES = 500


def test_answers(checkpoint: str) -> tuple[np.ndarray, np.ndarray]:
    """The av answers (class indices) of a checkpoint's model on its store's test split, and the
    labels, in a stable utterance order."""
    model, cfg, _ = restore_model(checkpoint)
    store = FeatureStore.open(cfg.data.store)
    outputs, targets = predict_split(model, cfg, store, "test")["av"].stacked()
    return outputs.argmax(axis=1), targets["label"]


def test_split_spread(checkpoints: list[str], classes: int) -> str:
    """What the test split's size alone does to the seeds' scores (see the module docstring)."""
    answers = [test_answers(c) for c in checkpoints]
    labels = answers[0][1]
    n = len(labels)
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, n, n) for _ in range(BOOTSTRAP_SAMPLES)]
    bootstrap = [
        np.std([classification_metrics(labels[i], a[i], classes)["macro_f1"] for i in draws])
        for a, _ in answers
    ]
    disagree = [np.mean(a != b) for (a, _), (b, _) in itertools.combinations(answers, 2)]
    expected = np.sqrt(np.mean(disagree) / n) / np.sqrt(2)
    return (
        f"Test split: {n} utterances. Two seeds' av answers differ on {np.mean(disagree):.1%} "
        f"of them on average ({min(disagree):.1%} to {max(disagree):.1%}); one model's test av "
        f"macro-F1 has a bootstrap standard deviation of {np.mean(bootstrap):.3f} over the test "
        f"utterances ({BOOTSTRAP_SAMPLES} resamples); models of equal quality with that many "
        f"disagreements spread by about {expected:.3f} (accuracy) from the test split alone."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    run_alone()
    seeds = [int(s) for s in args.seeds.split(",")]
    write_demo_corpus(DemoSettings(), RESULTS)
    ensure_ray()
    ingest_demo_corpus(RESULTS)
    overrides = [
        f"data.store={RESULTS / 'store'}",
        f"train.storage_path={RESULTS / 'runs'}",
        "train.experiment=bench-stability",
        *args.set,
    ]
    cfg = load_config(args.config, overrides)
    result = train_seeds(cfg, seeds, show_progress=False, log_model=False)
    metric = result.runs[0].selection_metric
    rows, tests = [], {c: [] for c in CONDITIONS}
    for seed, run in zip(seeds, result.runs, strict=True):
        move = largest_late_move(run.history, metric)
        scores = [run.test[f"test/{c}/macro_f1"] for c in CONDITIONS]
        for condition, score in zip(CONDITIONS, scores, strict=True):
            tests[condition].append(score)
        rows.append([seed, run.best_epoch, f"{move:.3f}", *(f"{s:.3f}" for s in scores)])
    rows.append(
        [
            "mean ± std",
            "",
            "",
            *(f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" for v in tests.values()),
        ]
    )
    header = [
        "seed",
        "best epoch",
        f"largest late move of {metric}",
        *(f"test {c}" for c in CONDITIONS),
    ]
    table = console.table(header, rows)
    print(table)
    checkpoints = [run.checkpoint for run in result.runs]
    spread = test_split_spread(checkpoints, cfg.task.num_outputs) if len(seeds) > 1 else ""
    print(spread)
    overrides_text = " ".join(args.set) or "none"
    record(
        "stability (demo corpus)",
        f"Recipe {args.config}, overrides: {overrides_text}. Test macro-F1 per condition; "
        "the late move is the largest epoch-to-epoch change of the dev selection metric over the "
        f"last half of training.\n\n```\n{table}\n```\n\n{spread}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
