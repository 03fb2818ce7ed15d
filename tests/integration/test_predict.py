"""Batch prediction with Ray Data on a tiny mixed store and on feature folders: coverage, the
condition of each row, MLflow and checkpoint loading, and rejects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.factories import (
    log_training_run,
    save_model_checkpoint,
    stepped_model,
    synthetic_store,
    tiny_recipe,
)
from vavl import console, tracking
from vavl.builders import build_model
from vavl.config import ExperimentConfig
from vavl.inference import (
    PredictSettings,
    answer_table,
    load_model,
    open_model,
    predict_folders,
)
from vavl.store import FeatureStore

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
CLASSES = ["angry", "sad", "disgust", "fear", "neutral", "happy"]


@pytest.fixture(scope="module")
def corpus_and_store(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None):
    root = tmp_path_factory.mktemp("predict")
    store = synthetic_store(
        root,
        shard_rows=8,
        frame_dtype="float16",
        utterances=40,
        seed=7,
        audio_dim=12,
        visual_dim=10,
        unpaired_share=0.4,
    )
    return root / "corpus", store


def bound_config(store: FeatureStore) -> ExperimentConfig:
    dims = (f"model.audio_dim={store.audio_dim}", f"model.visual_dim={store.visual_dim}")
    return tiny_recipe(store.uri, *dims, "train.experiment=test-predict")


def expected_conditions(corpus: Path, ids: list[str]) -> dict[str, str]:
    out = {}
    for uid in ids:
        a = (corpus / "audio" / f"{uid}.npy").exists()
        v = (corpus / "visual" / f"{uid}.npy").exists()
        out[uid] = "av" if a and v else "audio" if a else "visual"
    return out


def store_rows_table(store: FeatureStore) -> pa.Table:
    """Every row of every split, read straight from the shards (no Ray)."""
    paths = [p for split in store.splits() for p in store.shard_paths(split)]
    return pa.concat_tables([pq.read_table(p) for p in paths])


def store_rows(store: FeatureStore) -> pd.DataFrame:
    return store_rows_table(store).select(["id", "audio_frames", "visual_frames"]).to_pandas()


def predict_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_cli", REPO / "pipelines" / "predict.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_store_prediction_covers_every_id_once_with_its_condition(
    corpus_and_store, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    corpus, store_uri = corpus_and_store
    store = FeatureStore.open(store_uri)
    cfg = bound_config(store)
    model = stepped_model(cfg)
    _, uri = log_training_run(model, cfg, store)
    assert open_model(uri).normalization_source == f"model {uri}"  # the logged model carries them
    out = tmp_path / "out" / "predictions.parquet"
    args = ["--model", uri, "--store", store_uri, "--out", str(out), "--cpus-per-actor", "0.5"]
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)  # not a terminal: a line per batch
    assert predict_cli().main(args) == 0
    printed = capsys.readouterr().out
    assert "utterances/s" in printed and "rejected" not in printed
    total = len(store_rows(store))
    assert f"answered {total}/{total} utterances (100%)" in printed
    assert predict_cli().main([*args, "--quiet"]) == 0
    assert "answered" not in capsys.readouterr().out

    table = pq.read_table(out)
    frame = table.to_pandas()
    all_ids = sorted(store_rows(store)["id"])
    assert sorted(frame["id"]) == all_ids  # every id of every split, exactly once
    probs = frame[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (frame["predicted"] == np.array(CLASSES)[probs.argmax(axis=1)]).all()
    conditions = dict(zip(frame["id"], frame["condition"], strict=True))
    assert conditions == expected_conditions(corpus, all_ids)
    assert set(conditions.values()) == {"av", "audio", "visual"}
    assert table.schema.metadata[b"vavl.model_uri"] == uri.encode()
    assert pq.read_table(str(out).replace(".parquet", ".rejects.parquet")).num_rows == 0

    # The MLflow-loaded model answers exactly like the in-memory one.
    spec = store.batch_spec(
        normalize=cfg.data.normalize, min_speaker_utterances=cfg.data.speaker_min_utterances
    )
    local = answer_table(model, store_rows_table(store), spec, cfg.task)
    local = local.to_pandas().set_index("id").loc[frame["id"]]
    np.testing.assert_allclose(probs, local[[f"prob_{c}" for c in CLASSES]].to_numpy(), atol=1e-5)


def test_predict_pipeline_fails_clearly_before_ray(
    corpus_and_store, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, store_uri = corpus_and_store
    cli = predict_cli()
    out = str(tmp_path / "x.parquet")
    assert cli.main(["--model", str(tmp_path), "--store", store_uri, "--out", out]) == 2
    assert "neither an MLflow model URI" in capsys.readouterr().err
    store = FeatureStore.open(store_uri)
    cfg = bound_config(store)
    save_model_checkpoint(tmp_path / "ckpt", build_model(cfg), cfg)
    bad_split = ["--model", str(tmp_path / "ckpt"), "--store", store_uri, "--split", "holdout"]
    assert cli.main([*bad_split, "--out", out]) == 2
    assert "has no split 'holdout'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse refuses it before anything is loaded
        cli.main([*bad_split[:4], "--out", out, "--actors", "0"])
    assert exited.value.code == 2 and "--actors 0: must be >= 1" in capsys.readouterr().err


def test_models_uri_and_checkpoint_load_the_same_model(
    corpus_and_store, mlflow_uri: str, tmp_path: Path
) -> None:
    _, store_uri = corpus_and_store
    store = FeatureStore.open(store_uri)
    cfg = bound_config(store)
    model = stepped_model(cfg)
    log_training_run(model, cfg, store, registered_name="vavl-test")
    tracking.client().set_registered_model_alias("vavl-test", "champion", "1")
    save_model_checkpoint(tmp_path / "ckpt", model, cfg, epoch=1)
    for uri in ("models:/vavl-test/1", "models:/vavl-test@champion", str(tmp_path / "ckpt")):
        found, found_cfg = load_model(uri)
        assert found_cfg == cfg, uri
        for name, value in model.state_dict().items():
            assert torch.equal(found.state_dict()[name], value), (uri, name)
    with pytest.raises(ValueError, match="neither an MLflow model URI"):
        load_model(str(tmp_path))


def test_feature_folders_without_labels_and_bad_files_go_to_rejects(
    corpus_and_store, mlflow_uri: str, tmp_path: Path
) -> None:
    corpus, store_uri = corpus_and_store
    store = FeatureStore.open(store_uri)
    cfg = bound_config(store)
    model = stepped_model(cfg)
    # A checkpoint: its statistics come from the store named in the config (data.store).
    save_model_checkpoint(tmp_path / "ckpt", model, cfg)
    audio, visual = tmp_path / "audio", tmp_path / "visual"
    shutil.copytree(corpus / "audio", audio)
    shutil.copytree(corpus / "visual", visual)
    paired = sorted(p.stem for p in audio.glob("*.npy") if (visual / p.name).exists())
    bad = {paired[0]: "non_finite", paired[1]: "wrong_dim", paired[2]: "unreadable"}
    np.save(audio / f"{paired[0]}.npy", np.full((4, 12), np.nan, np.float32))
    np.save(visual / f"{paired[1]}.npy", np.zeros((4, 11), np.float32))
    (audio / f"{paired[2]}.npy").write_bytes(b"\x93NUMPY garbage")
    (audio / "README.txt").write_text("not an utterance")

    loaded = open_model(str(tmp_path / "ckpt"))
    assert loaded.normalization_source.startswith("store ")
    out = str(tmp_path / "folders.parquet")
    # Folders have no speakers: the user is told their frames are centred on the training mean.
    with pytest.warns(UserWarning, match="trained with per-speaker normalisation"):
        report = predict_folders(
            loaded,
            str(audio),
            str(visual),
            out,
            settings=PredictSettings(cpus_per_actor=0.5, batch_size=4),
        )
    answered = pq.read_table(out).to_pandas()
    rejects = pq.read_table(report.rejects_path).to_pandas()
    ids = {p.stem for p in [*audio.glob("*.npy"), *visual.glob("*.npy")]}
    assert sorted([*answered["id"], *rejects["id"]]) == sorted(ids)
    assert dict(zip(rejects["id"], rejects["reason"], strict=True)) == bad
    assert rejects.set_index("id").loc[paired[0], "file"].endswith(f"audio/{paired[0]}.npy")
    good = expected_conditions(corpus, sorted(ids - set(bad)))
    assert dict(zip(answered["id"], answered["condition"], strict=True)) == good
    assert report.rejected == {"non_finite": 1, "wrong_dim": 1, "unreadable": 1}

    # Same statistics, same model: the intact utterances are answered as from the store.
    spec = FeatureStore.open(store_uri).batch_spec()
    reference = answer_table(model, store_rows_table(store), spec, cfg.task).to_pandas()
    reference = reference.set_index("id").loc[answered["id"]]
    np.testing.assert_allclose(
        answered[[f"prob_{c}" for c in CLASSES]].to_numpy(),
        reference[[f"prob_{c}" for c in CLASSES]].to_numpy(),
        atol=2e-3,  # the store holds float16 frames, the folders float32
    )


def test_corrupt_store_row_is_rejected_alone(corpus_and_store) -> None:
    _, store_uri = corpus_and_store
    store = FeatureStore.open(store_uri)
    cfg = bound_config(store)
    rows = pq.read_table(store.shard_paths("train")[0])
    frames = rows.column("audio_frames").to_pylist()
    victim = next(i for i, n in enumerate(frames) if n > 0)
    frames[victim] += 3  # the row's bytes no longer hold that many frames
    broken = rows.set_column(
        rows.schema.get_field_index("audio_frames"), "audio_frames", [frames]
    ).cast(rows.schema)
    out = answer_table(stepped_model(cfg), broken, store.batch_spec(), cfg.task).to_pandas()
    assert len(out) == rows.num_rows
    reject = out[out["reject_reason"].notna()]
    assert list(reject["id"]) == [rows.column("id")[victim].as_py()]
    assert reject["reject_reason"].iloc[0] == "unreadable"
    assert "reshape" in reject["reject_detail"].iloc[0]
