"""Two seeds x one epoch on a tiny store: nested runs under one parent holding their aggregates."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from scipy import stats

from tests.factories import synthetic_store, tiny_recipe
from vavl.config import ConfigError, load_config
from vavl.multiseed import aggregate, train_seeds

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None) -> str:
    root = tmp_path_factory.mktemp("multiseed")
    return synthetic_store(
        root,
        shard_rows=16,
        frame_dtype="float32",
        utterances=40,
        seed=2,
        audio_dim=12,
        visual_dim=10,
        unpaired_share=0.2,
    )


def test_parent_holds_mean_std_and_interval_of_its_children(
    store: str, tmp_path: Path, mlflow_uri: str
) -> None:
    cfg = tiny_recipe(
        store,
        "optim.epochs=1",
        "train.workers=1",
        "train.cpus_per_worker=1",
        f"train.storage_path={tmp_path / 'runs'}",
        "train.experiment=test-multiseed",
    )
    result = train_seeds(cfg, [0, 1], parent_name="seeds", show_progress=False, log_model=False)

    client = mlflow.MlflowClient(mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["seeds"] == "[0, 1]"
    experiment = parent.info.experiment_id
    children = client.search_runs(
        [experiment], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    assert sorted(c.data.params["train.seed"] for c in children) == ["0", "1"]
    logged = parent.data.metrics
    t = stats.t.ppf(0.975, df=1)  # 12.706
    for key in ("dev/av/macro_f1", "test/av/macro_f1", "test/audio/accuracy", "test/visual/uar"):
        values = np.array([c.data.metrics[key] for c in children])
        assert logged[f"{key}/mean"] == pytest.approx(values.mean())
        assert logged[f"{key}/std"] == pytest.approx(values.std(ddof=1))
        half = t * values.std(ddof=1) / np.sqrt(2)
        assert logged[f"{key}/ci95_low"] == pytest.approx(values.mean() - half)
        assert logged[f"{key}/ci95_high"] == pytest.approx(values.mean() + half)
    assert "test/av/n/mean" not in logged
    # The two seeds really trained different models.
    assert result.runs[0].history[0]["train/loss"] != result.runs[1].history[0]["train/loss"]
    csv = client.download_artifacts(result.parent_run_id, "seeds.csv", str(tmp_path))
    assert Path(csv).read_text().splitlines()[1].startswith(f"0,{result.runs[0].run_id},")


def test_seed_lists_and_aggregates_are_checked(store: str) -> None:
    cfg = load_config(REPO / "configs" / "demo.yaml", [f"data.store={store}"])
    with pytest.raises(ConfigError, match=r">= 2 distinct seeds .* got \[1, 1\]"):
        train_seeds(cfg, [1, 1], parent_name="x")
    with pytest.raises(ValueError, match="needs >= 2 runs, got 1"):
        aggregate([{"test/av/macro_f1": 0.5}])
    three = aggregate([{"a/b/c": 1.0, "a/b/n": 5}, {"a/b/c": 2.0}, {"a/b/c": 3.0, "x": 1.0}])
    half = stats.t.ppf(0.975, df=2) * 1.0 / np.sqrt(3)
    assert three == pytest.approx(
        {
            "a/b/c/mean": 2.0,
            "a/b/c/std": 1.0,
            "a/b/c/ci95_low": 2 - half,
            "a/b/c/ci95_high": 2 + half,
        }
    )
