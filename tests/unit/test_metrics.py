"""Split-level metrics checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from vavl.config import TaskConfig
from vavl.metrics import (
    attribute_metrics,
    classification_metrics,
    concordance,
    confusion_matrix,
    task_metrics,
)


def reference_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """2 cov / (var_x + var_y + (mean_x - mean_y)^2), population moments."""
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))


# --- concordance -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_concordance_matches_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.uniform(1, 5, size=50)
    pred = 0.5 * target + rng.normal(1.0, 0.6, size=50)
    assert concordance(pred, target) == pytest.approx(reference_ccc(pred, target), rel=1e-12)


def test_concordance_known_values() -> None:
    target = np.array([1.0, 2.0, 3.0])
    assert concordance(target, target) == pytest.approx(1.0)
    assert concordance(-(target - 2), target - 2) == pytest.approx(-1.0)
    # var = 2/3 on both sides, shift 1: 2*(2/3) / (2/3 + 2/3 + 1) = 4/7
    assert concordance(target + 1, target) == pytest.approx(4 / 7)


def test_concordance_penalises_bias_and_scale() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])  # population variance 1.25
    assert concordance(y + 1, y) == pytest.approx(2 * 1.25 / (1.25 + 1.25 + 1))
    assert concordance(-y, y) == pytest.approx(-2 * 1.25 / (1.25 + 1.25 + 25))


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        ([0.1, 0.1, 0.1], [0.1, 0.1, 0.1]),  # equal constants: 0/0 without the rule
        ([2.0, 2.0, 2.0], [1.0, 3.0, 4.0]),
        ([1.0, 3.0, 4.0], [7.0, 7.0, 7.0]),
        ([3.2], [1.0]),
    ],
)
def test_concordance_degenerate_inputs_are_zero(pred: list[float], target: list[float]) -> None:
    assert concordance(np.array(pred), np.array(target)) == 0.0


def test_concordance_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        concordance(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="3 values, target has 2"):
        concordance(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="pred has 1 and target 0 NaN"):
        concordance(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


# --- classification --------------------------------------------------------------------------


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix(np.array([0, 0, 1, 2]), np.array([1, 0, 1, 1]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_classification_metrics_match_sklearn_with_absent_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = 6
    true = rng.integers(0, 5, size=80)  # class 5 never true
    pred = np.where(rng.random(80) < 0.5, true, rng.integers(0, classes, size=80))
    pred[pred == 3] = 2  # class 3 never predicted
    labels = list(range(classes))
    got = classification_metrics(true, pred, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred has a class absent in y_true
        uar = balanced_accuracy_score(true, pred)
    np.testing.assert_array_equal(
        confusion_matrix(true, pred, classes), sk_confusion_matrix(true, pred, labels=labels)
    )
    assert got["accuracy"] == pytest.approx(np.mean(true == pred))
    macro = f1_score(true, pred, average="macro", labels=labels, zero_division=0)
    assert got["macro_f1"] == pytest.approx(macro)
    assert got["micro_f1"] == pytest.approx(f1_score(true, pred, average="micro"))
    assert got["uar"] == pytest.approx(uar)
    present = sorted(set(true.tolist()))
    recall = recall_score(true, pred, average="macro", labels=present, zero_division=0)
    assert got["uar"] == pytest.approx(recall)


def test_classification_metrics_hand_values() -> None:
    got = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    # F1: class 0 = 2*1/(2+1), class 1 = 2*2/(2+3), class 2 = 0 (never true nor predicted)
    assert got == pytest.approx(
        {"accuracy": 0.75, "macro_f1": (2 / 3 + 4 / 5) / 3, "micro_f1": 0.75, "uar": 0.75}
    )


def test_classification_metrics_worked_example_with_an_absent_class() -> None:
    got = classification_metrics(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 0, 2]), 4)
    assert got["accuracy"] == got["micro_f1"] == pytest.approx(4 / 6)
    # F1: class 0 = 0.5, class 1 = 0.8, class 2 = 2/3, class 3 (never true nor predicted) = 0
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3 + 0) / 4)
    assert got["uar"] == pytest.approx((0.5 + 1 + 0.5) / 3)


def test_classification_metrics_one_class_present_are_finite() -> None:
    got = classification_metrics(np.zeros(5, dtype=int), np.zeros(5, dtype=int), 3)
    assert got == pytest.approx({"accuracy": 1.0, "macro_f1": 1 / 3, "micro_f1": 1.0, "uar": 1.0})
    wrong = classification_metrics(np.zeros(4, dtype=int), np.full(4, 2), 3)
    assert wrong == pytest.approx({"accuracy": 0.0, "macro_f1": 0.0, "micro_f1": 0.0, "uar": 0.0})


def test_classification_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(np.array([], dtype=int), np.array([], dtype=int), 3)
    with pytest.raises(ValueError, match=r"pred\[1\] = 3 is not a class in \[0, 3\)"):
        classification_metrics(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="integer class indices"):
        classification_metrics(np.array([0.0, 1.0]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="true has 2 labels, pred has 3"):
        classification_metrics(np.array([0, 1]), np.array([0, 1, 1]), 3)


# --- attributes and the task entry point -----------------------------------------------------


def test_attribute_metrics_per_attribute_and_mean() -> None:
    rng = np.random.default_rng(11)
    target = rng.uniform(1, 5, size=(30, 2))
    pred = target + rng.normal(scale=0.5, size=(30, 2))
    got = attribute_metrics(pred, target, ["arousal", "valence"])
    arousal = reference_ccc(pred[:, 0], target[:, 0])
    valence = reference_ccc(pred[:, 1], target[:, 1])
    assert got == pytest.approx(
        {"ccc_arousal": arousal, "ccc_valence": valence, "ccc_mean": (arousal + valence) / 2}
    )


def test_attribute_metrics_rejects_name_count_mismatch() -> None:
    with pytest.raises(ValueError, match="2 attribute columns for 3 names"):
        attribute_metrics(np.zeros((4, 2)), np.zeros((4, 2)), ["a", "b", "c"])


def test_task_metrics_categorical_scores_argmax() -> None:
    task = TaskConfig(kind="categorical", classes=["a", "b", "c"])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    got = task_metrics(task, probabilities, {"label": np.array([0, 1, 2, 1])})
    assert got == classification_metrics(np.array([0, 1, 2, 1]), np.array([0, 1, 2, 0]), 3)
    assert set(got) == {"accuracy", "macro_f1", "micro_f1", "uar"}
    assert got["accuracy"] == pytest.approx(0.75)


def test_task_metrics_attributes_keys() -> None:
    task = TaskConfig(kind="attributes")
    values = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 1.0], [3.0, 1.0, 2.0]])
    got = task_metrics(task, values, {"attributes": values})
    assert got == pytest.approx(
        {"ccc_arousal": 1.0, "ccc_valence": 1.0, "ccc_dominance": 1.0, "ccc_mean": 1.0}
    )


def test_task_metrics_rejects_missing_targets_and_wrong_width() -> None:
    task = TaskConfig(kind="categorical", classes=["a", "b"])
    with pytest.raises(ValueError, match="targets lack 'label'"):
        task_metrics(task, np.zeros((2, 2)), {"attributes": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"\(N, 2\), got shape \(2, 3\)"):
        task_metrics(task, np.zeros((2, 3)), {"label": np.array([0, 1])})


# --- split metrics: the mean over conditions --------------------------------------------------


def test_split_metrics_mean_is_over_the_conditions_with_rows() -> None:
    from vavl.evaluate import ConditionPredictions, split_metrics

    task = TaskConfig(kind="categorical", labels="hard", classes=["a", "b"])

    def condition(labels: list[int], predicted: list[int]) -> ConditionPredictions:
        probs = np.eye(2)[predicted]
        return ConditionPredictions(
            ids=[str(i) for i in range(len(labels))],
            speakers=["s"] * len(labels),
            outputs=[probs],
            labels=[np.asarray(labels)],
        )

    predictions = {
        "av": condition([0, 1, 0, 1], [0, 1, 0, 1]),  # all right
        "audio": condition([0, 1, 0, 1], [0, 0, 0, 0]),  # one class only
        "visual": ConditionPredictions(),  # no rows: not part of the mean
    }
    metrics = split_metrics(predictions, task, "dev")
    assert "dev/visual/macro_f1" not in metrics
    for name in ("macro_f1", "accuracy"):
        expected = (metrics[f"dev/av/{name}"] + metrics[f"dev/audio/{name}"]) / 2
        assert metrics[f"dev/mean/{name}"] == pytest.approx(expected)
    assert metrics["dev/audio/macro_f1"] < metrics["dev/mean/macro_f1"] < 1.0
    assert "dev/mean/n" not in metrics
