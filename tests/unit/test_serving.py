"""The servable model in-process: request rows checked as ingest checks files, per-speaker
centring from the request, answers equal to batch prediction's, and its files round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.factories import stepped_model, tiny_config
from vavl.inference.answers import answer_table
from vavl.serving import (
    ServedVAVL,
    ServingError,
    input_example,
    load_model_folder,
    request_table,
    save_model_folder,
    speaker_means,
)
from vavl.store import BatchSpec
from vavl.store.reader import normalisation

A, V = 6, 5


@pytest.fixture
def served() -> ServedVAVL:
    cfg = tiny_config(
        f"model.audio_dim={A}",
        f"model.visual_dim={V}",
        "data.normalize=speaker",
        "data.speaker_min_utterances=1",
    )
    stats = {
        "audio": {"mean": [0.5] * A, "std": [2.0] * A, "within_speaker_std": [1.5] * A},
        "visual": {"mean": [-0.5] * V, "std": [1.0] * V, "within_speaker_std": [0.5] * V},
    }
    model = ServedVAVL()
    model.model, model.config, model.normalization = stepped_model(cfg), cfg, stats
    return model


def frames(t: int, d: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(t, d)).tolist()


def request() -> pd.DataFrame:
    rows = [
        {"id": "p", "speaker": "s1", "audio": frames(4, A, 0), "visual": frames(3, V, 1)},
        {"id": "a", "speaker": "s1", "audio": frames(2, A, 2), "visual": None},
        {"id": "v", "speaker": "s2", "visual": frames(5, V, 3)},  # no audio key: NaN in pandas
    ]
    return pd.DataFrame(rows)


def test_answers_each_row_by_its_condition_as_batch_prediction_does(served: ServedVAVL) -> None:
    answers = served.predict(None, request())
    assert list(answers["id"]) == ["p", "a", "v"]
    assert list(answers["condition"]) == ["av", "audio", "visual"]
    probs = answers[[f"prob_{c}" for c in served.config.task.classes]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    # The same rows through batch prediction's path, centred on the request's speaker means
    # (data.speaker_min_utterances=1: s1 has 2 audio rows, s2 one visual row).
    cfg = served.config
    rows = request_table(request(), served.model)
    means = speaker_means(rows, "float32", {"audio": A, "visual": V}, 1)
    assert set(means["audio"]) == {"s1"} and set(means["visual"]) == {"s1", "s2"}
    audio_s1 = np.concatenate([np.asarray(frames(4, A, 0)), np.asarray(frames(2, A, 2))])
    np.testing.assert_allclose(means["audio"]["s1"], audio_s1.mean(0), rtol=1e-5)
    spec = BatchSpec(
        audio_dim=A,
        visual_dim=V,
        frame_dtype="float32",
        task_kind="categorical",
        num_classes=len(cfg.task.classes),
        num_attributes=0,
        **normalisation(served.normalization, "speaker", means),
    )
    expected = answer_table(served.model, rows, spec, cfg.task).to_pandas()
    np.testing.assert_allclose(probs, expected[[f"prob_{c}" for c in cfg.task.classes]], atol=1e-6)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "x", "audio": frames(3, A + 1, 0)}, r"row 0 \(id x\), field audio: wrong_dim"),
        ({"id": "x", "visual": [[float("nan")] * V]}, r"field visual: non_finite"),
        ({"id": "x", "audio": [1.0, 2.0]}, r"field audio: wrong_rank"),
        ({"id": "x", "audio": None, "visual": None}, r"row 0 \(id x\): no audio or visual frames"),
        ({"id": "x", "audio": frames(2, A, 0), "text": "hi"}, r"unknown input columns \['text'\]"),
        ({"audio": frames(2, A, 0)}, r"no 'id' column"),
    ],
)
def test_a_bad_request_names_its_row_and_field(served: ServedVAVL, row: dict, message: str) -> None:
    with pytest.raises(ServingError, match=message):
        served.predict(None, pd.DataFrame([row]))


def test_model_files_round_trip_and_the_example_is_answered(
    served: ServedVAVL, tmp_path: Path
) -> None:
    folder = save_model_folder(tmp_path / "m", served.model, served.config, served.normalization)
    model, cfg, stats = load_model_folder(folder)
    assert cfg == served.config and stats == served.normalization
    for name, value in served.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    example = input_example(model)
    assert list(served.predict(None, example)["condition"]) == ["av", "audio"]
