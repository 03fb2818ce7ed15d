"""Training objectives: CCC, cross-entropy (hard, soft, weighted), reconstruction, TaskObjective."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vavl.batch import Batch
from vavl.config import TaskConfig
from vavl.objectives import (
    TaskObjective,
    ccc,
    ccc_loss,
    cross_entropy_loss,
    reconstruction_loss,
)


def reference_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """2 cov / (var_x + var_y + (mean_x - mean_y)^2), population moments, float64."""
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return float(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))


def make_batch(rows: int, **labels: torch.Tensor | None) -> Batch:
    return Batch(
        ids=[f"u{i}" for i in range(rows)],
        speakers=["s"] * rows,
        audio=torch.zeros(rows, 3, 2),
        audio_mask=torch.ones(rows, 3, dtype=torch.bool),
        visual=torch.zeros(rows, 2, 2),
        visual_mask=torch.ones(rows, 2, dtype=torch.bool),
        has_audio=torch.ones(rows, dtype=torch.bool),
        has_visual=torch.ones(rows, dtype=torch.bool),
        **labels,
    )


# --- ccc -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ccc_matches_numpy_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.normal(3.0, 1.0, size=(40, 3))
    pred = 0.6 * target + rng.normal(0.5, 0.7, size=(40, 3))
    got = ccc(torch.tensor(pred), torch.tensor(target)).numpy()
    expected = [reference_ccc(pred[:, a], target[:, a]) for a in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ccc_known_values() -> None:
    target = torch.tensor([[1.0], [2.0], [3.0]])
    assert ccc(target, target).item() == pytest.approx(1.0, abs=1e-6)
    centred = target - 2.0
    assert ccc(-centred, centred).item() == pytest.approx(-1.0, abs=1e-6)
    # var = 2/3 on both sides, shift 1: 2*(2/3) / (2/3 + 2/3 + 1) = 4/7
    assert ccc(target + 1.0, target).item() == pytest.approx(4 / 7, abs=1e-6)


def test_ccc_degenerate_inputs_are_zero_not_nan() -> None:
    constant = torch.full((4, 2), 3.0)
    varying = torch.tensor([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 0.0]])
    assert ccc(constant, constant).tolist() == [0.0, 0.0]
    assert ccc(constant, varying).tolist() == [0.0, 0.0]
    single = ccc(torch.tensor([[2.5, 1.0]]), torch.tensor([[3.0, 1.0]]))
    assert single.tolist() == [0.0, 0.0]


def test_ccc_batch_of_one_gives_loss_one_and_zero_finite_gradient() -> None:
    pred = torch.tensor([[2.0, 4.0, 1.0]], requires_grad=True)
    loss = ccc_loss(pred, torch.tensor([[3.0, 1.0, 1.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert pred.grad is not None
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_ccc_rejects_mismatched_shapes_and_empty_batch() -> None:
    with pytest.raises(ValueError, match=r"\(4, 2\) and \(4, 3\)"):
        ccc(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="B=0"):
        ccc(torch.zeros(0, 2), torch.zeros(0, 2))


def test_ccc_loss_weights_are_normalised_weighted_mean() -> None:
    rng = np.random.default_rng(7)
    target = rng.normal(size=(20, 3))
    pred = target + rng.normal(scale=0.8, size=(20, 3))
    per_attribute = [1 - reference_ccc(pred[:, a], target[:, a]) for a in range(3)]
    pred_t, target_t = torch.tensor(pred), torch.tensor(target)
    assert ccc_loss(pred_t, target_t).item() == pytest.approx(np.mean(per_attribute), rel=1e-5)
    expected = (2 * per_attribute[0] + per_attribute[1] + per_attribute[2]) / 4
    assert ccc_loss(pred_t, target_t, [2.0, 1.0, 1.0]).item() == pytest.approx(expected, rel=1e-5)
    assert ccc_loss(pred_t, target_t, torch.tensor([0.5, 0.25, 0.25])).item() == pytest.approx(
        expected, rel=1e-5
    )


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0, 1.0], "2 values for 3"), ([1.0, -1.0, 1.0], ">= 0"), ([0.0, 0.0, 0.0], "positive")],
)
def test_ccc_loss_rejects_bad_weights(weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ccc_loss(torch.randn(5, 3), torch.randn(5, 3), weights)


def test_ccc_loss_gradients_are_finite() -> None:
    torch.manual_seed(0)
    pred = torch.randn(8, 3, requires_grad=True)
    ccc_loss(pred, torch.randn(8, 3)).backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


# --- cross-entropy ---------------------------------------------------------------------------


def test_hard_cross_entropy_matches_torch() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(10, 4), torch.randint(0, 4, (10,))
    expected = F.cross_entropy(logits, target)
    assert cross_entropy_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5, 3.0]])
def test_soft_cross_entropy_equals_hard_for_one_hot(weights: list[float] | None) -> None:
    torch.manual_seed(2)
    logits, target = torch.randn(12, 4), torch.randint(0, 4, (12,))
    one_hot = F.one_hot(target, 4).float()
    hard = cross_entropy_loss(logits, target, weights)
    soft = cross_entropy_loss(logits, one_hot, weights)
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)


def test_soft_cross_entropy_hand_value() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    probs = [0.2, 0.3, 0.5]
    log_norm = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    expected = -sum(p * (z - log_norm) for p, z in zip(probs, [1.0, 2.0, 3.0], strict=True))
    got = cross_entropy_loss(logits, torch.tensor([probs]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_with_class_weights_hand_value() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    weights = [1.0, 2.0, 4.0]
    log_norm = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    row0 = -(0.2 * 1 * (1 - log_norm) + 0.3 * 2 * (2 - log_norm) + 0.5 * 4 * (3 - log_norm))
    row1 = -(1.0 * 1 * -math.log(3))
    mass = (0.2 * 1 + 0.3 * 2 + 0.5 * 4) + 1.0
    got = cross_entropy_loss(logits, target, weights)
    assert got.item() == pytest.approx((row0 + row1) / mass, rel=1e-6)


def test_hard_cross_entropy_class_weights_hand_value() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    nll1 = -math.log(math.exp(1) / (math.exp(1) + 1))
    unweighted = cross_entropy_loss(logits, target).item()
    weighted = cross_entropy_loss(logits, target, [1.0, 3.0]).item()
    assert unweighted == pytest.approx((nll0 + nll1) / 2, rel=1e-6)
    assert weighted == pytest.approx((1 * nll0 + 3 * nll1) / 4, rel=1e-6)


def test_soft_target_rows_must_sum_to_one() -> None:
    target = torch.tensor([[0.5, 0.5], [0.6, 0.3], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"row 1 sums to 0\.9"):
        cross_entropy_loss(torch.zeros(3, 2), target)
    tolerated = torch.tensor([[0.5, 0.5005]])
    assert torch.isfinite(cross_entropy_loss(torch.zeros(1, 2), tolerated))


def test_hard_target_out_of_range_names_row() -> None:
    with pytest.raises(ValueError, match="row 2 is class 5"):
        cross_entropy_loss(torch.zeros(3, 4), torch.tensor([0, 1, 5]))


def test_cross_entropy_gradients_are_finite() -> None:
    torch.manual_seed(3)
    logits = torch.randn(6, 3, requires_grad=True)
    soft = torch.softmax(torch.randn(6, 3), dim=1)
    cross_entropy_loss(logits, soft, [1.0, 2.0, 1.0]).backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


# --- reconstruction --------------------------------------------------------------------------


def test_reconstruction_loss_hand_value_and_gradient() -> None:
    recon = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    loss = reconstruction_loss(recon, torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    assert loss.item() == pytest.approx((1 + 4 + 9 + 9) / 4)
    loss.backward()
    assert recon.grad is not None
    torch.testing.assert_close(recon.grad, torch.tensor([[0.5, 1.0], [1.5, 1.5]]))


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda x: ccc_loss(x, torch.zeros(0, 3)),
        lambda x: cross_entropy_loss(x, torch.zeros(0, dtype=torch.int64)),
        lambda x: cross_entropy_loss(x, torch.zeros(0, 3)),
        lambda x: reconstruction_loss(x, torch.zeros(0, 3)),
    ],
)
def test_losses_of_empty_batch_are_graph_connected_zeros(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    outputs = torch.zeros(0, 3, requires_grad=True)
    loss = loss_fn(outputs)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None


# --- TaskObjective ---------------------------------------------------------------------------


def test_objective_soft_categorical_uses_soft_label() -> None:
    task = TaskConfig(kind="categorical", classes=["a", "b", "c"], labels="soft")
    objective = TaskObjective.from_config(task)
    torch.manual_seed(4)
    outputs, soft = torch.randn(5, 3), torch.softmax(torch.randn(5, 3), dim=1)
    # A contradicting hard label shows the soft one is the target.
    batch = make_batch(5, soft_label=soft, label=torch.zeros(5, dtype=torch.int64))
    expected = cross_entropy_loss(outputs, soft)
    assert objective.prediction_loss(outputs, batch).item() == pytest.approx(expected.item())


def test_objective_hard_categorical_uses_label_and_class_weights() -> None:
    task = TaskConfig(
        kind="categorical", classes=["a", "b", "c"], labels="hard", class_weights=[1.0, 2.0, 3.0]
    )
    objective = TaskObjective.from_config(task)
    torch.manual_seed(5)
    outputs, label = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    got = objective.prediction_loss(outputs, make_batch(6, label=label))
    expected = F.cross_entropy(outputs, label, weight=torch.tensor([1.0, 2.0, 3.0]))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_objective_attributes_uses_weighted_ccc() -> None:
    task = TaskConfig(
        kind="attributes", attributes=["arousal", "valence"], attribute_weights=[3.0, 1.0]
    )
    objective = TaskObjective.from_config(task)
    torch.manual_seed(6)
    outputs, attributes = torch.randn(7, 2), torch.randn(7, 2)
    got = objective.prediction_loss(outputs, make_batch(7, attributes=attributes))
    per_attribute = 1 - ccc(outputs, attributes)
    expected = 0.75 * per_attribute[0] + 0.25 * per_attribute[1]
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("task", "missing"),
    [
        (TaskConfig(kind="categorical", labels="soft"), "soft_label"),
        (TaskConfig(kind="categorical", labels="hard"), "'label'"),
        (TaskConfig(kind="attributes"), "attributes"),
    ],
)
def test_objective_names_missing_label_field(task: TaskConfig, missing: str) -> None:
    objective = TaskObjective.from_config(task)
    with pytest.raises(ValueError, match=missing):
        objective.prediction_loss(torch.zeros(2, task.num_outputs), make_batch(2))


def test_objective_rejects_outputs_of_wrong_width() -> None:
    objective = TaskObjective.from_config(TaskConfig(kind="attributes"))
    batch = make_batch(2, attributes=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\), got \(2, 4\)"):
        objective.prediction_loss(torch.zeros(2, 4), batch)


@pytest.mark.parametrize("kind", ["categorical", "attributes"])
def test_objective_empty_batch_is_zero_with_grad(kind: str) -> None:
    task = TaskConfig(kind=kind, labels="soft")
    objective = TaskObjective.from_config(task)
    outputs = torch.zeros(0, task.num_outputs, requires_grad=True)
    batch = make_batch(0, soft_label=torch.zeros(0, task.num_outputs), attributes=torch.zeros(0, 3))
    loss = objective.prediction_loss(outputs, batch)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()


def test_objective_batch_of_one_attributes_is_finite() -> None:
    objective = TaskObjective.from_config(TaskConfig(kind="attributes"))
    outputs = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    loss = objective.prediction_loss(outputs, make_batch(1, attributes=torch.ones(1, 3)))
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert outputs.grad is not None
    assert torch.isfinite(outputs.grad).all()


def test_predict_softmax_for_categorical_raw_for_attributes() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    categorical = TaskObjective.from_config(TaskConfig(kind="categorical", classes=["a", "b"]))
    np.testing.assert_allclose(categorical.predict(logits), [[0.25, 0.75], [0.5, 0.5]], rtol=1e-6)
    values = torch.tensor([[1.5, -2.0, 3.0]], requires_grad=True)
    attributes = TaskObjective.from_config(TaskConfig(kind="attributes"))
    predicted = attributes.predict(values)
    assert isinstance(predicted, np.ndarray)
    np.testing.assert_array_equal(predicted, [[1.5, -2.0, 3.0]])


def test_metric_targets_picks_label_or_attributes() -> None:
    categorical = TaskObjective.from_config(TaskConfig(kind="categorical", labels="soft"))
    batch = make_batch(2, label=torch.tensor([3, 1]), soft_label=torch.full((2, 6), 1 / 6))
    np.testing.assert_array_equal(categorical.metric_targets(batch)["label"], [3, 1])
    with pytest.raises(ValueError, match="'label'"):
        categorical.metric_targets(make_batch(2, soft_label=torch.full((2, 6), 1 / 6)))
    attributes = TaskObjective.from_config(TaskConfig(kind="attributes"))
    values = torch.tensor([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(
        attributes.metric_targets(make_batch(1, attributes=values))["attributes"], values.numpy()
    )
