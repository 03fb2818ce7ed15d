"""`ideal.json` of a synthetic corpus: the ideal predictor's scores and the generative parameters.

The ideal predictor is the Bayes posterior of `vavl.synthetic` (`class_posterior`,
`attribute_prediction`), given the test utterances' frames as written (float32) and scored against
their written (rounded) labels with the project's metrics, `vavl.metrics`, so the ideal and a
trained model are scored by the same code. Categorical: the arg-max over the latent class against
the hard labels, `classification_metrics` (accuracy, macro F1 over the 6 classes with
zero_division=0, micro F1, UAR over the classes present in the truth); "calibration" holds each
condition's accuracy against the latent class next to the posterior's mean max-probability (its own
expected accuracy: the two agree up to sampling error). Attributes: the posterior mean of the
written label, `attribute_metrics` (CCC per attribute, population moments, and their mean; a CCC
with a constant side is 0.0).

The constants of `vavl.synthetic` are tuned so that, on a large test split, the ideal reaches
about: categorical accuracy audio 0.71, visual 0.59, av 0.83 (0.77 / 0.63 / 0.89 against the latent
class: annotators disagree with it on ~7% of utterances); attributes mean CCC audio 0.51, visual
0.40, av 0.70. Splits have few speakers, and the speaker offsets are shared within a speaker, so
small corpora scatter around these values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vavl.config import CONDITIONS, CREMA_D_CLASSES
from vavl.metrics import attribute_metrics, classification_metrics
from vavl.synthetic import (
    ATTR_CORR,
    ATTR_LOADING,
    ATTR_MEAN,
    ATTR_STD,
    CLASS_PRIOR,
    CLASS_SCALE,
    CONFUSED,
    DURATION_S,
    FPS,
    NOISE_STD,
    RATER_STD,
    SPEAKER_STD,
    Modality,
    Task,
    attribute_prediction,
    class_posterior,
)

ATTRIBUTES = ("arousal", "valence", "dominance")


def ideal_scores(
    task: Task, test: pd.DataFrame, mods: dict[str, Modality], stats: dict
) -> dict[str, dict[str, float]]:
    """Scores of the Bayes predictor per condition on the test utterances, plus calibration."""
    scores: dict[str, dict[str, float]] = {}
    calibration: dict[str, dict[str, float]] = {}
    for cond in CONDITIONS:
        if task == "categorical":
            post = class_posterior(mods, stats, cond)
            pred = post.argmax(axis=1)
            scores[cond] = classification_metrics(test["hard"].to_numpy(), pred, len(CLASS_PRIOR))
            calibration[cond] = {
                "accuracy_vs_latent": float(np.mean(pred == test["latent"].to_numpy())),
                "mean_max_posterior": float(post.max(axis=1).mean()),
            }
        else:
            pred = attribute_prediction(mods, stats, cond)
            truth = test[["EmoAct", "EmoVal", "EmoDom"]].to_numpy(float)
            scores[cond] = attribute_metrics(pred, truth, ATTRIBUTES)
    if calibration:
        scores["calibration"] = calibration
    return scores


def parameters(task: Task, settings: dict) -> dict:
    """The corpus settings and the generative parameters, as written under "parameters"."""
    params = {
        **settings,
        "task": task,
        "frame_rates": FPS,
        "duration_s": list(DURATION_S),
        "envelope": "g_t = sin(pi * (t + 0.5) / T)",
        "noise_std": NOISE_STD,
        "speaker_std": SPEAKER_STD,
    }
    if task == "categorical":
        params |= {
            "classes": list(CREMA_D_CLASSES),
            "class_prior": CLASS_PRIOR.tolist(),
            "class_scale": CLASS_SCALE,
            "confused_pairs": {k: [list(p) for p in v] for k, v in CONFUSED.items()},
            "annotators": "6-10 votes, P(latent class) ~ U(0.5, 0.95), else confusion row",
        }
    else:
        params |= {
            "attribute_mean": ATTR_MEAN,
            "attribute_std": ATTR_STD,
            "attribute_corr": ATTR_CORR.tolist(),
            "attribute_loading": {k: list(v) for k, v in ATTR_LOADING.items()},
            "annotators": f"5-8 raters, clip(round(y + N(0, {RATER_STD}^2)), 1, 5), mean",
        }
    return params


def ideal_report(
    task: Task, test: pd.DataFrame, mods: dict[str, Modality], stats: dict, settings: dict
) -> dict:
    """The content of `ideal.json`: method, split, test size, scores per condition, parameters."""
    method = (
        "arg-max latent class vs hard labels"
        if task == "categorical"
        else "posterior mean of the mean-rating label, CCC"
    )
    return {
        "method": "Bayes posterior under the true generative parameters (see vavl.synthetic); "
        + method,
        "split": "test",
        "n_utterances": len(test),
        **ideal_scores(task, test, mods, stats),
        "parameters": parameters(task, settings),
    }
