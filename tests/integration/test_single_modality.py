"""Corpora with one modality end to end: an audio-only and a visual-only store train on 2 workers
(only that branch exists, selection falls back to the condition dev has), then evaluate and
batch prediction report that condition alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

from tests.factories import tiny_recipe
from vavl.inference import load_model
from vavl.store import FeatureStore, ingest_corpus_folder
from vavl.synthetic import write_corpus
from vavl.train import fit

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "test-single-modality"
OTHER = {"audio": "visual", "visual": "audio"}


def cli(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO / f"pipelines/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["audio", "visual"])
def single_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ray_cluster: None
) -> tuple[str, str]:
    """(modality, store path) of a 48-utterance corpus ingested without the other modality."""
    modality = request.param
    root = tmp_path_factory.mktemp(f"{modality}-only")
    write_corpus(root / "corpus", utterances=48, seed=2, audio_dim=10, visual_dim=8, speakers=6)
    ingest_corpus_folder(
        root / "corpus", str(root / "store"), shard_rows=12, **{f"no_{OTHER[modality]}": True}
    )
    return modality, str(root / "store")


def test_one_modality_store_trains_evaluates_and_predicts(
    single_store: tuple[str, str],
    tmp_path: Path,
    mlflow_uri: str,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    modality, store_path = single_store
    # A store named relative to the working directory, as `--store data/x` gives it: the
    # workers, which run elsewhere, must still find it.
    monkeypatch.chdir(Path(store_path).parent)
    store_uri = Path(store_path).name
    store = FeatureStore.open(store_uri)
    assert getattr(store, f"{OTHER[modality]}_dim") == 0
    cfg = tiny_recipe(
        store_uri,
        "optim.epochs=2",
        f"train.storage_path={tmp_path / 'runs'}",
        f"train.experiment={EXPERIMENT}",
        "train.selection_metric=dev/av/macro_f1",  # a condition the dev split cannot give
    )
    result = fit(cfg, show_progress=False)

    # Only the present branch exists; the run selected on the condition the dev split has.
    assert result.selection_metric == f"dev/{modality}/macro_f1"
    model = load_model(result.model_uri)[0]
    assert model.modalities == (modality,)
    names = [name for name, _ in model.named_parameters()]
    assert not [n for n in names if OTHER[modality] in n or "fusion" in n]
    metrics = mlflow.MlflowClient(mlflow_uri).get_run(result.run_id).data.metrics
    for split in ("dev", "test"):
        assert 0.0 <= metrics[f"{split}/{modality}/macro_f1"] <= 1.0
        absent = (f"{split}/av/", f"{split}/{OTHER[modality]}/")
        assert not [k for k in metrics if k.startswith(absent)]

    args = ["--model", result.model_uri, "--store", store_uri, "--bootstrap", "20"]
    assert cli("evaluate").main([*args, "--experiment", EXPERIMENT]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert modality in rows and "av" not in rows and OTHER[modality] not in rows
    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (evaluation,) = client.search_runs([experiment], f"tags.`vavl.evaluates` = '{result.run_id}'")
    logged = evaluation.data.metrics
    assert logged[f"test/{modality}/macro_f1"] == pytest.approx(
        metrics[f"test/{modality}/macro_f1"]
    )
    assert not [k for k in logged if k.startswith(("test/av/", f"test/{OTHER[modality]}/"))]

    out = tmp_path / "predictions.parquet"
    predict = ["--model", result.model_uri, "--store", store_uri, "--out", str(out)]
    assert cli("predict").main(predict) == 0
    frame = pq.read_table(out).to_pandas()
    assert len(frame) == sum(store.count(split) for split in ("train", "dev", "test"))
    assert set(frame["condition"]) == {modality}
