"""pipelines/evaluate.py on a tiny mixed store: a new MLflow run linked to the training run, with
intervals, the missing-modality curves and figures; share 0 equals the plain evaluation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.factories import (
    log_training_run,
    save_model_checkpoint,
    stepped_model,
    synthetic_store,
    tiny_recipe,
)
from vavl import console
from vavl.builders import build_model
from vavl.config import ExperimentConfig
from vavl.evaluate import predict_split, split_metrics
from vavl.metrics import task_metrics
from vavl.store import FeatureStore

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "test-evaluate"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None) -> str:
    root = tmp_path_factory.mktemp("evaluate")
    return synthetic_store(
        root,
        shard_rows=8,
        frame_dtype="float32",
        utterances=60,
        seed=11,
        audio_dim=12,
        visual_dim=10,
        unpaired_share=0.3,
        speakers=6,
    )


def bound_config(store: FeatureStore, *overrides: str) -> ExperimentConfig:
    dims = (f"model.audio_dim={store.audio_dim}", f"model.visual_dim={store.visual_dim}")
    return tiny_recipe(store.uri, *dims, f"train.experiment={EXPERIMENT}", *overrides)


def evaluate_cli():
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO / "pipelines/evaluate.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_evaluation_run_is_linked_and_share_0_is_the_plain_evaluation(
    store_uri: str, mlflow_uri: str, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    store = FeatureStore.open(store_uri)
    cfg = bound_config(store)
    model = stepped_model(cfg, seed=1)
    training, uri = log_training_run(model, cfg, store)

    args = ["--model", uri, "--store", store_uri, "--bootstrap", "50", "--seed", "3"]
    assert (
        evaluate_cli().main([*args, "--missing-share", "0,0.5,1", "--drop", "visual,either"]) == 0
    )
    printed = capsys.readouterr().out
    assert "macro_f1 (visual dropped)" in printed and "macro_f1 (either dropped)" in printed
    assert "predicted" not in printed  # progress every 30 s off a terminal: none in this test

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    found = client.search_runs([experiment], f"tags.`vavl.evaluates` = '{training}'")
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED" and run.data.tags["vavl.model_uri"] == uri
    logged = run.data.metrics

    # The plain evaluation, as the training driver computes it on the test split.
    plain = predict_split(model, cfg, store, "test")
    expected = split_metrics(plain, cfg.task, "test")
    for condition in ("av", "audio", "visual"):
        for name in ("accuracy", "macro_f1", "uar"):
            key = f"test/{condition}/{name}"
            assert logged[key] == pytest.approx(expected[key], abs=1e-12)
            assert logged[f"{key}/ci95_low"] <= logged[key] <= logged[f"{key}/ci95_high"]
    assert logged["test/av/n"] == store.count("test", "av")

    def curve(drop: str) -> dict[int, float]:
        history = client.get_metric_history(run.info.run_id, f"test/missing_{drop}/macro_f1")
        return {m.step: m.value for m in history}

    assert sorted(curve("visual")) == sorted(curve("either")) == [0, 50, 100]
    assert curve("visual")[0] == curve("either")[0] == pytest.approx(expected["test/av/macro_f1"])
    # Share 1 of visual dropped: the audio head on the paired utterances.
    paired = set(plain["av"].ids)
    outputs, targets = plain["audio"].stacked()
    ids = np.asarray(sorted(plain["audio"].ids))
    keep = np.isin(ids, list(paired))
    audio_only = task_metrics(cfg.task, outputs[keep], {"label": targets["label"][keep]})
    assert curve("visual")[100] == pytest.approx(audio_only["macro_f1"])

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evaluation.txt", "robustness.csv", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/test_av_confusion.png", "plots/robustness.png"} <= plots

    # Off a terminal, a plain progress line at most every PLAIN_EVERY_S (here: every batch).
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)
    assert evaluate_cli().main([*args, "--bootstrap", "5"]) == 0
    rows = store.count("test")
    printed = capsys.readouterr().out.splitlines()
    assert f"predicted {rows}/{rows} utterances (100%)" in "\n".join(printed)
    assert any(line.startswith(f"missing-modality pass {rows}/{rows}") for line in printed)


def test_evaluation_refuses_bad_requests_before_reading(
    store_uri: str, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = FeatureStore.open(store_uri)
    for kind in ("categorical", "attributes"):
        cfg = bound_config(store, f"task.kind={kind}")
        save_model_checkpoint(tmp_path / kind, build_model(cfg), cfg)
    cli = evaluate_cli()
    assert cli.main(["--model", str(tmp_path / "attributes"), "--store", store_uri]) == 2
    assert "holds categorical labels" in capsys.readouterr().err
    args = ["--model", str(tmp_path / "categorical"), "--store", store_uri]
    # Flag values are refused by argparse, before anything is loaded: exit 2, value named.
    for flag, value, message in (
        ("--drop", "video", "--drop 'video': each must be one of"),
        ("--missing-share", "0,2", "--missing-share [0.0, 2.0]: shares lie in [0, 1]"),
    ):
        with pytest.raises(SystemExit) as exited:
            cli.main([*args, flag, value])
        assert exited.value.code == 2 and message in capsys.readouterr().err
