"""Training submitted with `ray job submit` to a `ray start --head` node, as the README tells
users to: token authentication on, the repository as the job's working directory, absolute paths
for the store, the checkpoints and the MLflow store (the job runs in a temporary copy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from tests.factories import synthetic_store
from tests.services import ray_head_node, ray_job_env

pytestmark = [pytest.mark.services, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]


def test_training_runs_as_a_ray_job_on_a_head_node(tmp_path: Path, ray_cluster: None) -> None:
    store = synthetic_store(
        tmp_path, shard_rows=32, utterances=60, seed=9, audio_dim=12, visual_dim=10
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = ray_job_env()
    with ray_head_node(env) as address:
        runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": tracking}}
        job = subprocess.run(
            [
                str(Path(sys.executable).with_name("ray")),
                *("job", "submit", "--address", address, "--working-dir", str(REPO)),
                *("--runtime-env-json", json.dumps(runtime_env), "--"),
                *("python", "pipelines/train.py", "--config", "configs/demo.yaml"),
                *("--store", store, "--experiment", "job-submit"),
                *("--set", "optim.epochs=2", "--set", f"train.storage_path={tmp_path / 'runs'}"),
                *("--set", "model.d_model=16", "--set", "model.n_heads=2"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-4000:]
    assert "succeeded" in log and "best epoch" in log  # Ray's verdict and our summary table

    client = mlflow.MlflowClient(tracking)
    experiment = client.get_experiment_by_name("job-submit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert "test/av/macro_f1" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "dev/av/macro_f1")) == 2
    assert run.data.params["data.store"] == store
