"""Synthetic corpus: layout and formats, determinism, splits, unpairing and the ideal predictor."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from vavl import synthetic as syn
from vavl.config import CONDITIONS
from vavl.metrics import attribute_metrics, classification_metrics

REPO = Path(__file__).resolve().parents[2]
FORMATS = REPO.parent / "shared" / "formats"
HEADERS = {  # used when the shared formats folder is not beside the repo (a plain clone in CI)
    "categorical": "FileName,angry,sad,disgust,fear,neutral,happy,SpkrID,Gender,Split_Set",
    "attributes": "FileName,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set",
}
SAMPLES = {
    "categorical": "crema-d_consensus_sample.csv",
    "attributes": "msp-improv_attributes_sample.csv",
}
SMALL = {"audio_dim": 8, "visual_dim": 6}


def _expected_header(task: str) -> list[str]:
    sample = FORMATS / SAMPLES[task]
    if sample.is_file():
        with sample.open(newline="") as f:
            return next(csv.reader(f))
    return HEADERS[task].split(",")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One corpus per task, big enough for the ideal scores to be stable (120 test utterances)."""
    out = {}
    for task in ("categorical", "attributes"):
        out[task] = tmp_path_factory.mktemp(task)
        syn.write_corpus(
            out[task], utterances=600, seed=3, task=task, audio_dim=32, visual_dim=24, speakers=40
        )
    return out


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        summary = syn.write_corpus(
            tmp_path / name, utterances=30, seed=seed, unpaired_share=0.4, **SMALL
        )
    first, again, other = (_tree(tmp_path / n) for n in "abc")
    n_files = sum(n["av"] * 2 + n["audio"] + n["visual"] for n in summary.counts.values())
    assert len(other) == 2 + n_files < 2 + 60
    assert first == again
    assert first["labels.csv"] != other["labels.csv"]
    shared = sorted(set(first) & set(other) - {"labels.csv", "ideal.json"})
    assert all(first[k] != other[k] for k in shared)


def test_frames_have_the_dims_and_frame_rates_of_one_duration(tmp_path: Path) -> None:
    syn.write_corpus(tmp_path, utterances=40, seed=1, audio_dim=10, visual_dim=7)
    for audio_file in sorted((tmp_path / "audio").glob("*.npy")):
        audio = np.load(audio_file)
        visual = np.load(tmp_path / "visual" / audio_file.name)
        assert audio.dtype == visual.dtype == np.float32
        assert (audio.shape[1], visual.shape[1]) == (10, 7)
        assert 1.5 * 50 - 1 <= audio.shape[0] <= 4.0 * 50 + 1
        # Both are rounded from the same duration: at most half a frame off each.
        assert abs(audio.shape[0] / 50 - visual.shape[0] / 30) <= 0.5 / 50 + 0.5 / 30


@pytest.mark.parametrize("task", ["categorical", "attributes"])
def test_labels_have_exactly_the_paper_corpus_columns(tmp_path: Path, task: str) -> None:
    syn.write_corpus(tmp_path, utterances=24, task=task, **SMALL)
    with (tmp_path / "labels.csv").open(newline="") as f:
        assert next(csv.reader(f)) == _expected_header(task)
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert labels["FileName"].str.endswith(".wav").all()
    assert labels["FileName"].is_unique
    assert set(labels["Gender"]) <= {"Female", "Male"}
    ids = {p.stem for p in (tmp_path / "audio").glob("*.npy")}
    assert ids == set(labels["FileName"].str.removesuffix(".wav"))


def test_consensus_rows_are_three_decimal_shares_summing_to_one(tmp_path: Path) -> None:
    syn.write_corpus(tmp_path, utterances=300, **SMALL)
    soft = pd.read_csv(tmp_path / "labels.csv")[list(syn.CREMA_D_CLASSES)].to_numpy()
    milli = np.round(soft * 1000)
    np.testing.assert_allclose(soft * 1000, milli, atol=1e-6)
    assert (milli.sum(axis=1) == 1000).all()
    assert ((soft >= 0) & (soft <= 1)).all()
    assert (soft.max(axis=1) < 1).any()  # annotators do disagree


def test_attribute_labels_are_mean_ratings_on_the_1_to_5_scale(tmp_path: Path) -> None:
    syn.write_corpus(tmp_path, utterances=200, task="attributes", **SMALL)
    values = pd.read_csv(tmp_path / "labels.csv")[["EmoAct", "EmoVal", "EmoDom"]].to_numpy()
    assert values.min() >= 1 and values.max() <= 5
    assert 2.5 < values.mean() < 3.5
    assert 0.4 < values.std() < 1.0
    # arousal and dominance are generated correlated (0.6), valence nearly independent
    corr = np.corrcoef(values.T)
    assert corr[0, 2] > 0.35 and abs(corr[0, 1]) < 0.3


@pytest.mark.parametrize("speakers", [3, 12, 20])
def test_splits_are_speaker_independent(tmp_path: Path, speakers: int) -> None:
    summary = syn.write_corpus(tmp_path, utterances=5 * speakers, speakers=speakers, **SMALL)
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert (labels.groupby("SpkrID")["Split_Set"].nunique() == 1).all()
    per_split = labels.groupby("Split_Set")["SpkrID"].nunique()
    assert per_split.sum() == speakers
    n_held_out = max(1, round(0.2 * speakers))
    assert per_split["Development"] == per_split["Test"] == n_held_out
    sizes = {k: sum(v.values()) for k, v in summary.counts.items()}
    assert sizes["test"] == (labels["Split_Set"] == "Test").sum() > 0


def test_unpaired_share_drops_one_modality_from_train_only(tmp_path: Path) -> None:
    summary = syn.write_corpus(tmp_path, utterances=100, unpaired_share=0.5, **SMALL)
    labels = pd.read_csv(tmp_path / "labels.csv")
    ids = labels["FileName"].str.removesuffix(".wav")
    has = {
        m: ids.map(lambda i, m=m: (tmp_path / m / f"{i}.npy").is_file())
        for m in ("audio", "visual")
    }
    train = labels["Split_Set"] == "Train"
    n_unpaired = round(0.5 * train.sum())
    assert (has["audio"] | has["visual"]).all()
    assert (has["audio"] & ~has["visual"]).sum() == n_unpaired // 2
    assert (~has["audio"] & has["visual"]).sum() == n_unpaired - n_unpaired // 2
    assert (has["audio"] & has["visual"])[~train].all()
    assert summary.counts["train"] == {
        "av": int(train.sum()) - n_unpaired,
        "audio": n_unpaired // 2,
        "visual": n_unpaired - n_unpaired // 2,
    }


@pytest.mark.parametrize("task", ["categorical", "attributes"])
def test_ideal_fusion_beats_audio_beats_visual(corpora: dict[str, Path], task: str) -> None:
    corpus = corpora[task]
    ideal = syn.read_ideal(corpus)
    metric = "accuracy" if "accuracy" in ideal["av"] else "ccc_mean"
    av, audio, visual = (ideal[c][metric] for c in CONDITIONS)
    assert av > audio > visual > 0.2
    assert ideal["n_utterances"] == len(
        pd.read_csv(corpus / "labels.csv").query("Split_Set == 'Test'")
    )
    if metric == "accuracy":
        assert 0.75 < av < 0.95 and 0.6 < audio < 0.8 and 0.45 < visual < 0.7
        assert ideal["av"]["micro_f1"] == ideal["av"]["accuracy"]
    else:
        assert 0.6 < av < 0.8 and 0.4 < audio < 0.65 and 0.25 < visual < 0.5


def test_ideal_accuracy_is_close_to_its_expected_value_on_the_test_split(
    corpora: dict[str, Path],
) -> None:
    ideal = syn.read_ideal(corpora["categorical"])
    for cond in CONDITIONS:
        cal = ideal["calibration"][cond]
        assert abs(cal["accuracy_vs_latent"] - cal["mean_max_posterior"]) < 0.08, cond


def _simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """n utterances, each from a fresh speaker, of the categorical model; (latent, evidence)."""
    mods = syn.build_modalities("categorical", {"audio": 6, "visual": 6}, n, rng)
    latent = rng.choice(6, size=n, p=syn.CLASS_PRIOR)
    duration = rng.uniform(*syn.DURATION_S, size=n)
    stats = {}
    for name, mod in mods.items():
        ev = [
            syn.evidence(mod, syn.frames(mod, mod.means[:, c], i, round(syn.FPS[name] * d), rng))
            for i, (c, d) in enumerate(zip(latent, duration, strict=True))
        ]
        stats[name] = (np.array([z for z, _ in ev]), np.array([e for _, e in ev]))
    return latent, {"mods": mods, "stats": stats}


def test_posterior_is_calibrated_over_many_speakers() -> None:
    latent, sim = _simulate(2500, np.random.default_rng(11))
    for cond in CONDITIONS:
        post = syn.class_posterior(sim["mods"], sim["stats"], cond)
        np.testing.assert_allclose(post.sum(axis=1), 1.0)
        accuracy = np.mean(post.argmax(axis=1) == latent)
        assert abs(accuracy - post.max(axis=1).mean()) < 0.03, cond


def test_evidence_equals_the_exact_gaussian_likelihood_with_the_offset_integrated_out() -> None:
    rng = np.random.default_rng(5)
    mod = syn.build_modalities("categorical", {"audio": 6, "visual": 6}, 1, rng)["visual"]
    n_frames, dim = 7, 6
    x = syn.frames(mod, mod.means[:, 2], 0, n_frames, rng)
    # Flattened (t, d) covariance: white noise plus one offset per dimension shared over time.
    cov = mod.noise_std**2 * np.eye(n_frames * dim) + mod.speaker_std**2 * np.kron(
        np.ones((n_frames, n_frames)), np.eye(dim)
    )
    g = syn.envelope(n_frames)
    z, e = syn.evidence(mod, x)
    exact, closed = [], []
    for c in range(6):
        mean = np.outer(g, mod.embed @ mod.means[:, c]).ravel()
        exact.append(multivariate_normal(mean, cov).logpdf(x.astype(float).ravel()))
        closed.append(mod.means[:, c] @ z - 0.5 * e * mod.means[:, c] @ mod.means[:, c])
    np.testing.assert_allclose(np.diff(exact), np.diff(closed), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("task", ["categorical", "attributes"])
def test_ideal_scores_are_vavl_metrics_of_the_posterior_on_the_written_test_files(
    corpora: dict[str, Path], task: str
) -> None:
    ideal = syn.read_ideal(corpora[task])
    settings = ideal["parameters"]
    # The true model as write_corpus draws it (its second seed); the offsets do not enter evidence.
    model_rng = np.random.default_rng(np.random.SeedSequence(settings["seed"]).spawn(4)[1])
    dims = {"audio": settings["audio_dim"], "visual": settings["visual_dim"]}
    mods = syn.build_modalities(task, dims, settings["speakers"], model_rng)
    test = pd.read_csv(corpora[task] / "labels.csv").query("Split_Set == 'Test'")
    stats = {}
    for name, mod in mods.items():
        ev = [
            syn.evidence(mod, np.load(corpora[task] / name / f"{stem}.npy"))
            for stem in test["FileName"].str.removesuffix(".wav")
        ]
        stats[name] = (np.array([z for z, _ in ev]), np.array([e for _, e in ev]))
    for cond in CONDITIONS:
        if task == "categorical":
            hard = test[list(syn.CREMA_D_CLASSES)].to_numpy().argmax(axis=1)
            pred = syn.class_posterior(mods, stats, cond).argmax(axis=1)
            expected = classification_metrics(hard, pred, len(syn.CREMA_D_CLASSES))
        else:
            pred = syn.attribute_prediction(mods, stats, cond)
            truth = test[["EmoAct", "EmoVal", "EmoDom"]].to_numpy()
            expected = attribute_metrics(pred, truth, ["arousal", "valence", "dominance"])
        assert ideal[cond] == expected, cond


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"speakers": 2}, "speakers=2"),
        ({"utterances": 5}, "utterances=5"),
        ({"unpaired_share": 1.5}, "unpaired_share=1.5"),
        ({"audio_dim": 4}, "audio_dim=4"),
        ({"task": "ordinal"}, "task='ordinal'"),
    ],
)
def test_invalid_settings_fail_naming_the_value(tmp_path: Path, kwargs: dict, field: str) -> None:
    settings = {"utterances": 20, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=field):
        syn.write_corpus(tmp_path, **settings)


def test_read_ideal_accepts_folder_or_file_and_names_a_missing_one(tmp_path: Path) -> None:
    syn.write_corpus(tmp_path, utterances=20, **SMALL)
    assert syn.read_ideal(tmp_path) == syn.read_ideal(tmp_path / "ideal.json")
    assert set(syn.read_ideal(tmp_path)) >= {"av", "audio", "visual", "method", "parameters"}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        syn.read_ideal(tmp_path / "nowhere")


def _cli() -> object:
    spec = importlib.util.spec_from_file_location(
        "synthesize", REPO / "pipelines" / "synthesize.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_refuses_a_non_empty_folder_unless_told_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _cli()
    args = ["--out", str(tmp_path), "--utterances", "30", "--audio-dim", "8", "--visual-dim", "6"]
    assert cli.main([*args, "--unpaired-share", "0.5"]) == 0
    assert "ideal on test" in capsys.readouterr().out
    before = _tree(tmp_path)
    assert cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _tree(tmp_path) == before
    assert cli.main([*args, "--overwrite"]) == 0
    # stale single-modality files of the first corpus are gone: all 30 are paired now
    assert len(list((tmp_path / "audio").glob("*.npy"))) == 30
    assert len(list((tmp_path / "visual").glob("*.npy"))) == 30
