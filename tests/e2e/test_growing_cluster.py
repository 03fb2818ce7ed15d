"""A cluster that grows, as the cluster launcher's and KubeRay's do: the head has no CPU for work,
training is submitted as a Ray job, it waits for resources instead of refusing, and runs once a
worker node joins."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.factories import synthetic_store
from tests.services import ray_head, ray_job_env, ray_worker_node

pytestmark = [pytest.mark.services, pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_training_waits_on_a_headless_cluster_until_a_worker_node_joins(
    tmp_path: Path, ray_cluster: None
) -> None:
    store = synthetic_store(
        tmp_path, shard_rows=32, utterances=60, seed=9, audio_dim=12, visual_dim=10
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = ray_job_env()
    with ray_head(env, num_cpus=0) as head:
        submit = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")),
                *("job", "submit", "--address", head.dashboard, "--working-dir", str(REPO)),
                *("--runtime-env-json", f'{{"env_vars": {{"MLFLOW_TRACKING_URI": "{tracking}"}}}}'),
                "--",
                *("python", "pipelines/train.py", "--config", "configs/demo.yaml"),
                *("--store", store, "--experiment", "grown", "--set", "optim.epochs=1"),
                *("--set", f"train.storage_path={tmp_path / 'runs'}"),
                *("--set", "model.d_model=16", "--set", "model.n_heads=2"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(20)  # the job is running and waiting: nothing could have placed its workers
        assert submit.poll() is None, submit.stdout.read()
        with ray_worker_node(head.gcs, env, num_cpus=2, log=tmp_path / "worker.log"):
            log, _ = submit.communicate(timeout=600)
    assert submit.returncode == 0, log[-4000:]
    assert "waiting up to 600 s for the Ray cluster to provide 2 CPU" in log
    assert "(it has 0 CPU)" in log and "the Ray cluster now has 2 CPU" in log

    client = mlflow.MlflowClient(tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("grown").experiment_id])
    assert run.info.status == "FINISHED" and "test/av/macro_f1" in run.data.metrics
