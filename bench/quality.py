"""Model quality on the synthetic corpus: test scores against the corpus's ideal scores, and the
cost of training with a share of unpaired utterances. Not a test: it trains to convergence.

    .venv/bin/python bench/quality.py [--utterances 3000] [--speakers 40] [--shares 0,0.5]
        [--config configs/synthetic-large.yaml] [--out data/quality] [--set key=value ...]

Per share it writes a corpus with the same seed (the same utterances, labels and test split; only
which training utterances lose a modality differs), ingests it, trains the recipe and reads the
test split once with the best dev checkpoint. The runs land in MLflow (experiment of the recipe).

Beside the ideal (the Bayes posterior under the TRUE parameters) it prints a learned reference:
multinomial logistic regression (scikit-learn, from the dev extra) on each utterance's sufficient
statistic in feature space, r = sum_t g_t x_t - kappa G sum_t x_t (`vavl.synthetic.offset_free_sum`,
which `evidence` projects with the unknown E_m), fitted on the same training utterances with its
L2 strength chosen on dev. It knows the generator's form and not its parameters, so the distance
between it and the ideal is what estimating the parameters from this many utterances costs any
learner.

Beside them, the plain baselines the model must beat: logistic regression and an MLP on each
utterance's pooled frame means, globally normalised and speaker-centred
(`bench/quality_factors.py`).
The reference and the ideal integrate the speaker offset out per utterance; per-speaker
normalisation instead estimates it from the speaker's other utterances (features only), which is
why VAVL and the speaker-centred baselines can score above both.

Figures: BENCHMARKS.md, section "quality (...)", written by this script with the date and CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from record import record, run_alone

from vavl import console
from vavl.config import CONDITIONS, load_config
from vavl.quality import ideal_checks, unpaired_checks
from vavl.runtime import ensure_ray
from vavl.store import ingest_corpus_folder
from vavl.synthetic import write_corpus
from vavl.train import fit

REPO = Path(__file__).resolve().parents[1]
WITHIN = 0.02


def build_store(root: Path, args: argparse.Namespace, share: float) -> tuple[str, dict]:
    corpus = write_corpus(
        root / "corpus",
        utterances=args.utterances,
        speakers=args.speakers,
        seed=args.seed,
        audio_dim=args.audio_dim,
        visual_dim=args.visual_dim,
        unpaired_share=share,
        overwrite=True,
    )
    ingest_corpus_folder(
        root / "corpus",
        str(root / "store"),
        overwrite=True,
        shard_rows=256,
    )
    return str(root / "store"), corpus.ideal


CONDITION_MODALITIES = {"av": ("audio", "visual"), "audio": ("audio",), "visual": ("visual",)}
REFERENCE_L2 = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse strengths tried, chosen on dev


def _dev_selected_test_score(data: dict, metric: str, num_classes: int) -> float:
    """Logistic regression fitted on data["Train"] for each L2 strength; the test score of the
    one best on data["Development"]. data: split -> (features (N, F), class indices (N,))."""
    from sklearn.linear_model import LogisticRegression

    from vavl.metrics import classification_metrics

    def score(model: LogisticRegression, split: str) -> float:
        features, labels = data[split]
        return classification_metrics(labels, model.predict(features), num_classes)[metric]

    models = [LogisticRegression(C=c, max_iter=5000).fit(*data["Train"]) for c in REFERENCE_L2]
    return score(max(models, key=lambda m: score(m, "Development")), "Test")


def reference_scores(corpus: Path, metric: str) -> dict[str, float]:
    """Test `metric` per condition of logistic regression on the sufficient statistic."""
    import numpy as np
    import pandas as pd

    from vavl.config import CREMA_D_CLASSES
    from vavl.synthetic import NOISE_STD, SPEAKER_STD, offset_free_sum

    table = pd.read_csv(corpus / "labels.csv")
    label = table[list(CREMA_D_CLASSES)].to_numpy().argmax(axis=1)  # ties: first class

    def statistic(modality: str, file_name: str) -> np.ndarray | None:
        path = corpus / modality / f"{file_name.rsplit('.', 1)[0]}.npy"
        if not path.exists():
            return None
        x = np.load(path)
        r, _ = offset_free_sum(x, NOISE_STD[modality], SPEAKER_STD[modality])
        return r / np.sqrt(len(x))

    stats = {m: [statistic(m, f) for f in table["FileName"]] for m in ("audio", "visual")}
    split = table["Split_Set"].to_numpy()
    scores = {}
    for condition, modalities in CONDITION_MODALITIES.items():
        rows = [i for i in range(len(table)) if all(stats[m][i] is not None for m in modalities)]
        features = np.stack([np.concatenate([stats[m][i] for m in modalities]) for i in rows])
        parts = {s: np.flatnonzero(split[rows] == s) for s in ("Train", "Development", "Test")}
        data = {s: (features[idx], label[rows][idx]) for s, idx in parts.items()}
        scores[condition] = _dev_selected_test_score(data, metric, len(CREMA_D_CLASSES))
    return scores


# Pooled utterance means, globally normalised and speaker-centred: logistic regression and an MLP.
BASELINE_COLUMNS = ("global/logreg", "global/mlp", "speaker/logreg", "speaker/mlp")


def pooled_mean_baselines(store_uri: str) -> dict[str, float]:
    """Test macro-F1 per "{normalisation}/{model}/{condition}" of the plain baselines."""
    from quality_factors import baselines, read_split

    from vavl.store import FeatureStore

    store = FeatureStore.open(store_uri)
    tables = {split: read_split(store, split) for split in ("train", "dev", "test")}
    return {
        f"{mode}/{name}": value
        for mode in ("global", "speaker")
        for name, value in baselines(store, tables, mode).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "synthetic-large.yaml"))
    parser.add_argument("--out", default="data/quality")
    parser.add_argument("--utterances", type=int, default=3000)
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio-dim", type=int, default=64)
    parser.add_argument("--visual-dim", type=int, default=48)
    parser.add_argument("--shares", default="0,0.5", help="unpaired shares; the first is the base")
    parser.add_argument("--metric", default="macro_f1")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    run_alone()
    ensure_ray()
    shares = [float(s) for s in args.shares.split(",")]
    out = Path(args.out).resolve()
    results, rows, checks, timings = {}, [], [], []
    for share in shares:
        root = out / f"unpaired-{share:g}"
        started = time.perf_counter()
        store, ideal = build_store(root, args, share)
        cfg = load_config(
            args.config,
            [
                f"data.store={store}",
                f"train.storage_path={out / 'runs'}",
                *args.overrides,
            ],
        )
        result = fit(cfg, run_name=f"quality-unpaired-{share:g}-{time.strftime('%H%M%S')}")
        results[share] = result.test
        reference = reference_scores(root / "corpus", args.metric)
        plain = pooled_mean_baselines(store)
        for condition in CONDITIONS:
            score = result.test[f"test/{condition}/{args.metric}"]
            best = ideal[condition][args.metric]
            rows.append(
                [
                    share,
                    condition,
                    score,
                    *(plain[f"{kind}/{condition}"] for kind in BASELINE_COLUMNS),
                    reference[condition],
                    best,
                    best - score,
                ]
            )
        checks += ideal_checks(
            result.test, ideal, args.metric, within=WITHIN, label=f"unpaired {share:g}: "
        )
        timings.append(
            f"share {share:g}: best epoch {result.best_epoch}, "
            f"{time.perf_counter() - started:.0f} s"
        )
        print(timings[-1] + f", run {result.run_id}")
    base = shares[0]
    for share in shares[1:]:
        checks += unpaired_checks(
            results[base], results[share], args.metric, share=share, within=WITHIN
        )
    headers = [
        "unpaired share",
        "condition",
        "VAVL test",
        *BASELINE_COLUMNS,
        "reference",
        "ideal",
        "VAVL gap",
    ]
    scores = console.table(headers, rows)
    targets = console.table(
        ["target", "met", "figures"],
        [[c.name, "yes" if c.met else "NO", c.detail] for c in checks],
    )
    print(scores)
    print(targets)
    record(
        f"quality ({Path(args.config).stem}, {args.utterances} utterances)",
        f"Test {args.metric}; {', '.join(timings)}.\n\n```\n{scores}\n\n{targets}\n```",
    )
    (out / "quality.json").write_text(
        json.dumps({str(s): t for s, t in results.items()}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
