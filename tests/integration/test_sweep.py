"""Ray Tune + Optuna + ASHA over real Ray Train runs: MLflow parent and nested children, the best
recipe, the test split read once by the driver, and a sweep resumed after its driver was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.factories import TINY_TRAINING, synthetic_store
from vavl.config import load_config
from vavl.search_space import Float
from vavl.store import FeatureStore
from vavl.sweep import run_sweep

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
SPACE = {
    "loss.residual_weight": Float(0.05, 4.0, log=True),
    "loss.reconstruction_weight": Float(0.1, 10.0, log=True),
}
TINY = [*TINY_TRAINING, "optim.epochs=2", "tune.grace_period=1"]


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None) -> str:
    root = tmp_path_factory.mktemp("sweep-store")
    return synthetic_store(
        root,
        shard_rows=16,
        frame_dtype="float32",
        utterances=48,
        seed=7,
        audio_dim=12,
        visual_dim=10,
        unpaired_share=0.3,
    )


def test_three_trials_two_at_a_time(
    sweep_store: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        [
            *TINY,
            f"data.store={sweep_store}",
            f"train.storage_path={tmp_path / 'runs'}",
            f"tune.storage_path={tmp_path / 'sweeps'}",
            "train.experiment=test-sweep",
        ],
    )
    result = run_sweep(
        cfg, SPACE, name="weights", trials=3, concurrent=2, recipe_dir=tmp_path / "tuned"
    )

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("test-sweep").experiment_id
    parent = client.get_run(result.parent_run_id)
    manifest_id = FeatureStore.open(sweep_store).manifest_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    assert len(children) == 3 and len(result.trials) == 3
    weights = {
        (c.data.params["residual_weight"], c.data.params["reconstruction_weight"]) for c in children
    }
    assert len(weights) == 3  # Optuna proposed three distinct points
    recipe_weights = (str(cfg.loss.residual_weight), str(cfg.loss.reconstruction_weight))
    assert recipe_weights in weights  # the recipe's own point is one of the trials
    for child in children:
        assert child.data.params["loss.residual_weight"] == child.data.params["residual_weight"]
        assert "dev/av/macro_f1" in child.data.metrics
        assert not any(k.startswith("test/") for k in child.data.metrics)  # trials never read test
        assert child.data.tags["vavl.trial_state"] in {"finished", "stopped early"}
        assert child.info.status == "FINISHED"  # also when ASHA stopped it: the tag says so
        assert child.data.tags["mlflow.note.content"].startswith("Trial of sweep `weights`: ")
        (data,) = child.inputs.dataset_inputs  # the store the trial trained on
        assert data.dataset.digest == manifest_id[:36] and sweep_store in data.dataset.source
    assert any(k.startswith("test/av/") for k in parent.data.metrics)
    assert parent.data.tags["mlflow.note.content"].startswith("Sweep `weights` over ")
    assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == [manifest_id[:36]]
    assert parent.data.params["space.loss.residual_weight"] == "0.05..4 (log)"
    assert float(parent.data.params["best.loss.residual_weight"]) == pytest.approx(
        result.best.params["loss.residual_weight"]
    )
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "optuna")}
    assert "optuna/optimization_history.png" in artifacts and "optuna/contour.png" in artifacts

    recipe = yaml.safe_load(result.best_config_path.read_text())
    assert recipe["loss"]["residual_weight"] == pytest.approx(
        result.best.params["loss.residual_weight"]
    )
    assert load_config(result.best_config_path).loss == result.best_config.loss

    # One line per trial event, no Tune status table, none of the notices nobody can act on.
    captured = capfd.readouterr()
    printed = captured.out
    assert "Trial status" not in printed and "Current best trial" not in printed
    assert "Configuration for experiment" not in printed and "View detailed results" not in printed
    assert "tensorboard" not in (printed + captured.err).lower()
    assert "ExperimentalWarning" not in captured.err
    assert "Token authentication is enabled" not in captured.err
    assert "Downloading artifacts" not in captured.err  # MLflow's bar, once per checkpoint
    assert not list((tmp_path / "sweeps").rglob("events.out.tfevents*"))
    assert all(row.score is not None for row in result.trials)  # read from Tune's CSV/JSON
    for row in result.trials:
        (started,) = [
            line for line in printed.splitlines() if f"trial {row.trial_id} started:" in line
        ]
        assert "loss.residual_weight=" in started and "loss.reconstruction_weight=" in started
        assert f"trial {row.trial_id} epoch 1: dev/mean/macro_f1_smoothed " in printed
        ended = ("finished after", "stopped early at epoch")
        assert any(f"trial {row.trial_id} {end}" in printed for end in ended), row.trial_id


def _children(uri: str, experiment: str) -> list:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return [
        r for r in client.search_runs([found.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]


def test_killed_sweep_resumes_without_repeating_finished_trials(
    sweep_store: str, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [
        sys.executable,
        str(REPO / "tuning" / "loss_weights.py"),
        "--config",
        str(REPO / "configs" / "demo.yaml"),
        "--store",
        sweep_store,
        "--trials",
        "3",
        "--concurrent",
        "1",
        "--name",
        "resumable",
        "--recipe-dir",
        str(tmp_path / "tuned"),
        *(
            arg
            for item in [
                *TINY,
                f"train.storage_path={tmp_path / 'runs'}",
                f"tune.storage_path={tmp_path / 'sweeps'}",
                "train.experiment=test-resume",
            ]
            for arg in ("--set", item)
        ),
    ]
    log = tmp_path / "first.log"
    first = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 900
        while not any(r.info.status == "FINISHED" for r in _children(uri, "test-resume")):
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started
        first.wait()
    finished_before = {
        r.data.tags["vavl.run_name"]
        for r in _children(uri, "test-resume")
        if r.info.status == "FINISHED"
    }

    resumed = subprocess.run(
        [*command, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    children = _children(uri, "test-resume")
    names = [r.data.tags["vavl.run_name"] for r in children]
    assert len(set(names)) == 3 and len(names) == 3  # exactly N trials, none duplicated
    for run in children:
        if run.data.tags["vavl.run_name"] in finished_before:
            history = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "epoch")
            assert len(history) == len({m.step for m in history})  # not trained again
