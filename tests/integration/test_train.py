"""Ray Train DDP on a tiny synthetic store: metrics and artifacts in MLflow, replicas in step,
recovery from a killed worker, the test split read only at the end, the lr schedule and early
stopping, and early failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from tests.factories import synthetic_store, tiny_recipe
from vavl.checkpoint import load_checkpoint, restore_model
from vavl.config import ConfigError, ExperimentConfig
from vavl.evaluate import predict_split, split_metrics
from vavl.inference import load_model
from vavl.schedule import LrSchedule, batches_per_epoch, steps_per_epoch
from vavl.store import FeatureStore
from vavl.train import FaultPlan, fit

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None) -> str:
    root = tmp_path_factory.mktemp("train-store")
    return synthetic_store(
        root,
        shard_rows=16,
        frame_dtype="float32",
        utterances=60,
        seed=5,
        audio_dim=12,
        visual_dim=10,
        unpaired_share=0.3,
    )


def recipe(store: str, tmp_path: Path, *overrides: str) -> ExperimentConfig:
    runs = f"train.storage_path={tmp_path / 'runs'}"
    return tiny_recipe(
        store, f"optim.epochs={EPOCHS}", runs, "train.experiment=test-train", *overrides
    )


def test_ddp_run_logs_metrics_artifacts_and_model(
    tiny_store: str, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[tuple[str, int]] = []
    original = FeatureStore.dataset

    def spy(self: FeatureStore, split: str):
        logged = mlflow.MlflowClient(mlflow_uri).search_runs(
            [mlflow.get_experiment_by_name("test-train").experiment_id]
        )
        epochs_logged = max((len(_history(r.info.run_id, mlflow_uri)) for r in logged), default=0)
        requested.append((split, epochs_logged))
        return original(self, split)

    monkeypatch.setattr(FeatureStore, "dataset", spy)
    result = fit(recipe(tiny_store, tmp_path), show_progress=False)

    # The test split is read once, after every epoch was logged; train and dev before.
    assert [split for split, _ in requested].count("test") == 1
    assert ("test", EPOCHS) in requested
    assert all(split != "test" or epochs == EPOCHS for split, epochs in requested)

    client = mlflow.MlflowClient(mlflow_uri)
    run = client.get_run(result.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["residual_weight"] == "1.0" and params["reconstruction_weight"] == "2.0"
    assert params["model.d_model"] == "16" and params["data.manifest_id"]
    assert int(params["data.n_train_audio"]) > 0 and int(params["data.n_train_visual"]) > 0
    for condition in ("av", "audio", "visual"):
        for name in ("accuracy", "macro_f1", "micro_f1", "uar"):
            assert 0.0 <= metrics[f"dev/{condition}/{name}"] <= 1.0
            assert 0.0 <= metrics[f"test/{condition}/{name}"] <= 1.0
    assert len(_history(result.run_id, mlflow_uri)) == EPOCHS
    assert metrics["train/rank_weight_spread"] == 0.0  # both DDP replicas hold the same weights
    assert run.info.status == "FINISHED"
    (data,) = run.inputs.dataset_inputs  # the store, as MLflow's input dataset
    assert data.dataset.digest == params["data.manifest_id"][:36]
    assert tiny_store in data.dataset.source
    assert {(t.key, t.value) for t in data.tags} >= {("mlflow.data.context", "train")}
    assert run.data.tags["mlflow.note.content"].startswith("Training run of recipe `")
    assert run.data.tags["vavl.precision"] == "fp32"  # the demo recipe's, as rank 0 resolved it
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "manifest.json", "learning_curves.png", "plots", "logs"} <= artifacts
    logs = {a.path for a in client.list_artifacts(result.run_id, "logs")}
    assert logs == {"logs/driver.log"}  # the driver's warnings, if any (tracking.RUN_LOG)
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/test_av_confusion.png" in plots

    model = load_model(result.model_uri)[0]
    assert model.audio_dim == 12 and model.visual_dim == 10


# Figures of an epoch that depend on the machine's load, not on what was computed.
TIMINGS = ("time/", "train/samples_per_s", "train/data_wait_share", "train/peak_rss_mb")


def computed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if not k.startswith(TIMINGS)} for h in history]


def last_weights(result) -> dict[str, torch.Tensor]:
    """The weights of the run's last checkpoint (the final weights, whichever epoch was best)."""
    kept = [p for p in Path(result.storage_path).glob("checkpoint_*") if p.is_dir()]
    latest = max(kept, key=lambda p: load_checkpoint(p).state.epoch)
    model, _, _ = restore_model(str(latest))
    return model.state_dict()


@pytest.fixture(scope="module")
def straight(tiny_store: str, tmp_path_factory: pytest.TempPathFactory):
    """A 3-epoch 2-worker run with the recipe's seed, and its final weights."""
    root = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        result = fit(
            recipe(tiny_store, root, "optim.epochs=3"),
            show_progress=False,
            evaluate_test=False,
            log_model=False,
        )
    return result, last_weights(result)


def assert_same_run(result, weights: dict[str, torch.Tensor], straight) -> None:
    reference, reference_weights = straight
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0]
    for got, want in zip(computed(result.history), computed(reference.history), strict=True):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert weights.keys() == reference_weights.keys()
    for name, value in weights.items():
        torch.testing.assert_close(value, reference_weights[name], rtol=1e-5, atol=1e-6)


def test_same_seed_same_metrics(tiny_store: str, tmp_path: Path, mlflow_uri: str, straight) -> None:
    cfg = recipe(tiny_store, tmp_path, "optim.epochs=3")
    result = fit(cfg, show_progress=False, evaluate_test=False, log_model=False)
    assert_same_run(result, last_weights(result), straight)
    other = fit(
        recipe(tiny_store, tmp_path, "optim.epochs=1", "train.seed=1"),
        show_progress=False,
        evaluate_test=False,
        log_model=False,
    )
    assert other.history[0]["train/loss"] != straight[0].history[0]["train/loss"]


def test_resume_equals_straight(tiny_store: str, tmp_path: Path, mlflow_uri: str, straight) -> None:
    # 60 utterances, ~36 train rows over 2 workers in batches of 8: ~3 steps per epoch.
    # The kill comes in epoch 2, once Ray Train has surely registered epoch 1's checkpoint.
    fault = FaultPlan(at_step=4, marker=str(tmp_path / "fault-fired"), rank=1, settle_s=6.0)
    cfg = recipe(tiny_store, tmp_path, "optim.epochs=3", "train.max_failures=1")
    result = fit(cfg, show_progress=False, fault=fault, evaluate_test=False, log_model=False)
    assert Path(fault.marker).exists()  # the worker really was killed
    run = mlflow.MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.data.tags["vavl.resumed_from_epoch"] == "1"
    assert run.info.status == "FINISHED"
    # Epochs 2 and 3 drew the batches and dropout masks the straight run drew.
    assert_same_run(result, last_weights(result), straight)


def test_warmup_then_cosine_and_early_stopping_on_the_best_checkpoint(
    tiny_store: str, tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture
) -> None:
    # The dev row count never improves after epoch 1, so patience 2 ends the run after epoch 3
    # of 6 whatever the model learns; two warm-up epochs make the lr rise, then cosine lowers it.
    # Three checkpoints kept: Ray would evict the earliest of three tied ones (see best_checkpoint).
    # Two batches per optimizer step: the schedule counts steps, the progress lines batches.
    cfg = recipe(
        tiny_store,
        tmp_path,
        "optim.epochs=6",
        "optim.warmup_epochs=2",
        "train.selection_metric=dev/av/n",
        "train.patience=2",
        "train.checkpoints_to_keep=3",
        "train.progress_every_s=0",  # a step line after every step
        "optim.accumulate_batches=2",
    )
    assert cfg.optim.grad_clip == 1.0 and cfg.optim.schedule == "cosine"  # the defaults
    result = fit(cfg, log_model=False)

    # Not a terminal: plain step lines inside each epoch, then that epoch's line; none after 3.
    train_rows = FeatureStore.open(tiny_store).count("train")
    batches = batches_per_epoch(train_rows, 2, 8)
    steps = steps_per_epoch(train_rows, 2, 8, accumulate=2)
    assert batches > steps > 1
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    expected_lines = []
    for epoch in (1, 2, 3):
        expected_lines += [f"epoch {epoch:>3}/6  step {k}/{batches}" for k in range(1, batches + 1)]
        expected_lines.append(f"epoch {epoch:>3}/6  train loss")
    assert len(printed) == len(expected_lines), printed
    starts = [line[: len(want)] for line, want in zip(printed, expected_lines, strict=True)]
    assert starts == expected_lines

    client = mlflow.MlflowClient(mlflow_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["vavl.stopped_early_at_epoch"] == "3" and result.stopped_early_at == 3
    assert run.info.status == "FINISHED"
    lrs = [m.value for m in sorted(client.get_metric_history(result.run_id, "train/lr"), key=_step)]
    assert len(lrs) == 3 and lrs[0] < lrs[1] > lrs[2]
    schedule = LrSchedule.from_config(cfg.optim, steps)  # the steps the workers really took
    expected = [cfg.optim.lr * schedule.multiplier(epoch * steps) for epoch in (1, 2, 3)]
    assert lrs == pytest.approx(expected)
    assert lrs[1] == pytest.approx(cfg.optim.lr)
    smoothed = client.get_metric_history(result.run_id, "dev/av/n_smoothed")
    assert len(smoothed) == 3

    # Test metrics come from epoch 1's checkpoint, the best, not from the last one.
    assert result.best_epoch == 1 and load_checkpoint(result.checkpoint).state.epoch == 1
    model, _, _ = restore_model(result.checkpoint)
    store = FeatureStore.open(tiny_store)
    again = split_metrics(predict_split(model, cfg, store, "test"), cfg.task, "test")
    assert result.test == pytest.approx(again)
    assert run.data.metrics["test/av/macro_f1"] == pytest.approx(again["test/av/macro_f1"])
    test_steps = {m.step for m in client.get_metric_history(result.run_id, "test/av/macro_f1")}
    assert test_steps == {1}


def test_bad_config_and_missing_store_fail_before_ray_starts(tmp_path: Path) -> None:
    script = REPO / "pipelines" / "train.py"
    missing = subprocess.run(
        [sys.executable, str(script), "--config", "configs/demo.yaml", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert missing.returncode == 2
    assert "no manifest.json" in missing.stderr and "Started a local Ray" not in missing.stderr
    bad = subprocess.run(
        [sys.executable, str(script), "--config", "configs/demo.yaml", "--set", "loss.x=1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "loss.x: unknown key" in bad.stderr


def test_task_mismatch_is_named(tiny_store: str, tmp_path: Path) -> None:
    cfg = recipe(tiny_store, tmp_path, "task.kind=attributes")
    with pytest.raises(ConfigError, match=r"task.kind='attributes' but store .* 'categorical'"):
        fit(cfg, show_progress=False)


def _step(metric) -> int:
    return metric.step


def _history(run_id: str, uri: str) -> list:
    return mlflow.MlflowClient(uri).get_metric_history(run_id, "dev/av/macro_f1")
