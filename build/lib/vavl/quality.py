"""Model quality on a synthetic corpus: test scores against the corpus's ideal (Bayes) scores, and
what training on a partly unpaired corpus costs against the fully paired one.

The targets are those the training issue sets: within `within` of the ideal in every condition,
fusion above both single modalities, and at most `unpaired_loss` lost per condition when a share
of the training utterances has one modality only. Scores are the test split's, computed by the
same `vavl.metrics` that score the ideal predictor, on the same utterances.
"""

from __future__ import annotations

from dataclasses import dataclass

from vavl.config import CONDITIONS


@dataclass(frozen=True)
class Check:
    name: str
    met: bool
    detail: str


def condition_score(test: dict[str, float], condition: str, metric: str) -> float:
    key = f"test/{condition}/{metric}"
    if key not in test:
        raise KeyError(f"{key} is not among the test metrics: {sorted(test)}")
    return float(test[key])


def ideal_checks(
    test: dict[str, float], ideal: dict, metric: str, *, within: float, label: str = ""
) -> list[Check]:
    """Each condition within `within` of the ideal, and fusion above both single modalities."""
    checks = []
    scores = {c: condition_score(test, c, metric) for c in CONDITIONS}
    for condition, score in scores.items():
        gap = ideal[condition][metric] - score
        checks.append(
            Check(
                f"{label}{condition} within {within:.2f} of ideal",
                gap <= within,
                f"{metric} {score:.3f} vs ideal {ideal[condition][metric]:.3f} (gap {gap:+.3f})",
            )
        )
    best_single = max(scores["audio"], scores["visual"])
    checks.append(
        Check(
            f"{label}fusion above both modalities",
            scores["av"] > best_single,
            f"av {scores['av']:.3f} vs best single {best_single:.3f}",
        )
    )
    return checks


def unpaired_checks(
    paired: dict[str, float],
    unpaired: dict[str, float],
    metric: str,
    *,
    share: float,
    within: float,
) -> list[Check]:
    """Per condition, at most `within` lost by training with `share` of the utterances unpaired."""
    checks = []
    for condition in CONDITIONS:
        before = condition_score(paired, condition, metric)
        after = condition_score(unpaired, condition, metric)
        checks.append(
            Check(
                f"unpaired {share:g}: {condition} loses at most {within:.2f}",
                before - after <= within,
                f"{metric} {after:.3f} vs paired {before:.3f} (lost {before - after:+.3f})",
            )
        )
    return checks
