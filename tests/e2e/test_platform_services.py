"""The platform against real services: a PostgreSQL-backed MLflow server with artifacts on S3,
the feature store and checkpoints on S3 (moto), ingest + training + a 2-trial sweep; everything
read back through the server and the bucket, and the S3 secret found nowhere."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pytest

from tests.conftest import S3Server
from tests.factories import tiny_recipe
from vavl.search_space import Float
from vavl.store import FeatureStore, ingest_corpus_folder
from vavl.sweep import run_sweep
from vavl.synthetic import write_corpus
from vavl.train import fit

pytestmark = [pytest.mark.services, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]


def _keys(s3: S3Server, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _downloaded_text(client: mlflow.MlflowClient, run_id: str) -> str:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(client.download_artifacts(run_id, "", directory))
        return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_ingest_train_and_sweep_on_real_services(
    s3_server: S3Server,
    tracking_server,
    ray_cluster: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    bucket = f"s3://{s3_server.bucket}"
    corpus = tmp_path / "corpus"
    write_corpus(corpus, utterances=48, seed=11, audio_dim=12, visual_dim=10, unpaired_share=0.3)
    ingest_corpus_folder(
        corpus,
        f"{bucket}/stores/e2e",
        shard_rows=16,
    )
    assert FeatureStore.open(f"{bucket}/stores/e2e").count("train") > 0

    cfg = tiny_recipe(
        f"{bucket}/stores/e2e",
        f"train.storage_path={bucket}/runs",
        f"tune.storage_path={bucket}/sweeps",
        "train.experiment=e2e",
        "optim.epochs=2",
        "train.register_model=e2e-vavl",
    )
    run = fit(cfg, show_progress=False)
    sweep = run_sweep(
        cfg,
        {
            "loss.residual_weight": Float(0.05, 4.0, log=True),
            "loss.reconstruction_weight": Float(0.1, 10.0, log=True),
        },
        name="e2e-weights",
        trials=2,
        concurrent=2,
        recipe_dir=tmp_path / "tuned",
    )

    client = mlflow.MlflowClient(tracking_server.uri)
    training = client.get_run(run.run_id)
    assert training.info.status == "FINISHED"
    assert len(client.get_metric_history(run.run_id, "dev/av/macro_f1")) == 2
    assert "test/av/macro_f1" in training.data.metrics
    assert {"config.yaml", "manifest.json", "plots"} <= {
        a.path for a in client.list_artifacts(run.run_id)
    }
    experiment = client.get_experiment_by_name("e2e").experiment_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{sweep.parent_run_id}'"
    )
    assert len(children) == 2
    assert all("dev/av/macro_f1" in c.data.metrics for c in children)
    assert "optuna/optimization_history.png" in {
        a.path for a in client.list_artifacts(sweep.parent_run_id, "optuna")
    }

    # The sweep's best model is logged to its parent run and is the registry's champion.
    champion = client.get_model_version_by_alias("e2e-vavl", "champion")
    assert champion.run_id == sweep.parent_run_id and champion.version == "2"  # 1: the training
    assert sweep.model_uri == f"runs:/{sweep.parent_run_id}/model"

    # What the server and Ray wrote really is in the bucket.
    assert "stores/e2e/manifest.json" in _keys(s3_server, "stores/e2e/")
    assert any("checkpoint_" in key for key in _keys(s3_server, f"runs/{run.run_name}/"))
    assert any(
        key.endswith("config.yaml") for key in _keys(s3_server, tracking_server.artifacts_prefix)
    )
    assert _keys(s3_server, "sweeps/e2e-weights/")

    # The credentials appear in no object of the bucket: Tune's and Train's state files,
    # checkpoints, the store, MLflow's artifacts; nor in any database row, artifact or output.
    for key in _keys(s3_server, ""):
        body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        for credential in (s3_server.secret_key, s3_server.access_key):
            assert credential.encode() not in body, key
    assert any("tuner.pkl" in key for key in _keys(s3_server, "sweeps/e2e-weights/"))
    secret = s3_server.secret_key
    assert secret not in tracking_server.db_dump()
    assert secret not in _downloaded_text(client, run.run_id)
    assert secret not in _downloaded_text(client, sweep.parent_run_id)
    assert secret not in tracking_server.log_path.read_text()
    captured = capfd.readouterr()
    assert secret not in captured.out and secret not in captured.err
