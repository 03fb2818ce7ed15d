"""Synthetic audio-visual emotion corpus with a known generative model and a known ideal score.

The corpus is laid out like the paper's: `labels.csv` with exactly the CREMA-D consensus columns
(categorical task) or the MSP-IMPROV attribute columns (attributes task), plus one float32 array
per utterance and modality, `audio/<id>.npy` (T_a x D_a, 50 frames/s) and `visual/<id>.npy`
(T_v x D_v, 30 frames/s) over the same duration (uniform in 1.5-4 s). Splits are
speaker-independent (about 60/20/20 of the speakers, each speaker in one split). With
`unpaired_share` F, a share F of the TRAIN utterances keeps one modality file only (half audio-only,
half visual-only); development and test utterances stay paired, so every condition is scored on
the same test utterances. Ids look like the corpora's: "1001_SYN_ANG_01" (speaker, the acted
class, i.e. the latent one, as CREMA-D names carry the intended emotion; the labels are the
annotators' consensus) and "SYN-S01-F02-0001" (session, gender and speaker, running number).
With overwrite, only what this module writes (labels.csv, ideal.json, audio/, visual/) is replaced.

Generative model. Each utterance has a latent label: a class c drawn from a fixed prior over
angry, sad, disgust, fear, neutral, happy, or attributes y = (arousal, valence, dominance) drawn
from a correlated Gaussian around 3. Frame t of T in modality m is

    x_t = g_t * E_m @ mu_m(label) + b_{speaker,m} + sigma_m * eps_t,     eps_t ~ N(0, I_D)

with the time envelope g_t = sin(pi * (t + 0.5) / T) (a smooth bump: the signal strength varies
within the utterance), E_m a fixed D x L matrix with orthonormal columns (drawn from the seed) that
embeds an L-dim latent signal into the D feature dimensions, mu_m the modality's class mean (an
L-vector per class) or linear attribute loading (mu_m(y) = A_m @ (y - 3)), b a per-speaker offset
~ N(0, tau_m^2 I_D) shared by all utterances of a speaker (a nuisance), and white noise. The two
modalities carry complementary parts of the signal: audio confuses angry/happy and sad/neutral and
carries arousal best; visual confuses angry/disgust and fear/sad and carries valence best. Audio is
the stronger modality, and the noises are independent, so fusing them is strictly better.

Labels as annotators give them. Categorical: 6-10 simulated votes per utterance, each the latent
class with a per-utterance probability in [0.5, 0.95], otherwise a class drawn from a fixed
confusion row; the consensus is the vote share, rounded to 3 decimals with the residual put on the
largest share so every row sums to exactly 1.000. The hard label is the arg-max of the written row,
ties going to the first class in the paper's order. Attributes: 5-8 raters per utterance, each
rating clip(round(y + N(0, 0.5^2)), 1, 5); the label is the mean rating (6 decimals).

Ideal predictor. The Bayes posterior under the true parameters, given one utterance's frames (the
speaker offset is integrated out per utterance, so nothing about other utterances is used). Per
dimension the frames are Gaussian with covariance sigma^2 I + tau^2 11^T, whose inverse is
(I - kappa 11^T) / sigma^2 with kappa = tau^2 / (sigma^2 + T tau^2), so with
r = sum_t g_t x_t - kappa G sum_t x_t, G = sum_t g_t, e = sum_t g_t^2 - kappa G^2 and z = E_m^T r,
the log-likelihood of a latent mean mu is exactly

    (mu . z - e |mu|^2 / 2) / sigma_m^2   (+ terms that do not depend on the label).

Categorical: log posterior = log prior + the sum of that over the modalities given (both for av);
the prediction is its arg-max over the latent class. Attributes: the likelihood is Gaussian in y,
so the posterior of y is Gaussian (prior precision plus sum_m e A_m^T A_m / sigma_m^2); the
prediction is the exact posterior mean of the written label, E[clip(round(y + noise), 1, 5)], from
the normal CDF of each rating level. `ideal.json` holds its scores on the test utterances as
written, computed with `vavl.metrics` (see `vavl.synthetic_ideal`), and the parameters above.

The constants below are tuned for the ideal scores listed in `vavl.synthetic_ideal`; the feature
dimensions do not change the difficulty (E_m has orthonormal columns).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import logsumexp, ndtr

from vavl.config import CREMA_D_CLASSES

log = logging.getLogger(__name__)

Task = Literal["categorical", "attributes"]
MODALITIES = ("audio", "visual")
SPLITS = {"Train": "train", "Development": "dev", "Test": "test"}
CLASS_CODES = ("ANG", "SAD", "DIS", "FEA", "NEU", "HAP")
CATEGORICAL_COLUMNS = ["FileName", *CREMA_D_CLASSES, "SpkrID", "Gender", "Split_Set"]
ATTRIBUTE_COLUMNS = ["FileName", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
FPS = {"audio": 50, "visual": 30}
DURATION_S = (1.5, 4.0)
CLASS_PRIOR = np.array([0.18, 0.17, 0.17, 0.17, 0.14, 0.17])
# Which classes each modality (and the annotators) find hard to tell apart.
CONFUSED = {"audio": [(0, 5), (1, 4)], "visual": [(0, 2), (3, 1)]}
ANNOTATOR_CONFUSED = [(0, 2), (1, 4), (3, 1), (5, 4)]
NOISE_STD = {"audio": 1.0, "visual": 1.0}
SPEAKER_STD = {"audio": 0.25, "visual": 0.25}
CLASS_SCALE = {"audio": 0.55, "visual": 0.48}
ATTR_MEAN = 3.0
ATTR_STD = 0.8
ATTR_CORR = np.array([[1.0, 0.1, 0.6], [0.1, 1.0, 0.2], [0.6, 0.2, 1.0]])
# Per-attribute signal strength (arousal, valence, dominance) in each modality.
ATTR_LOADING = {"audio": (0.40, 0.10, 0.20), "visual": (0.12, 0.35, 0.14)}
RATER_STD = 0.5
LATENT_DIM = {"categorical": 6, "attributes": 3}


@dataclass
class CorpusSummary:
    """What `write_corpus` wrote: counts per split ("train", "dev", "test") and modality
    combination ("av" paired, "audio" audio-only, "visual" visual-only), and the ideal scores."""

    out: Path
    task: str
    counts: dict[str, dict[str, int]]
    ideal: dict


@dataclass(frozen=True)
class Modality:
    """True parameters of one modality. embed (D, L) has orthonormal columns; means (L, K) holds
    the class means (categorical) or the attribute loadings A_m (attributes); offsets (S, D)."""

    name: str
    noise_std: float
    speaker_std: float
    embed: np.ndarray
    means: np.ndarray
    offsets: np.ndarray


def envelope(n_frames: int) -> np.ndarray:
    """Signal strength g_t over n_frames: a smooth bump, ~0 at the ends, 1 mid-way."""
    return np.sin(np.pi * (np.arange(n_frames) + 0.5) / n_frames)


def _class_means(name: str) -> np.ndarray:
    """(L, K) class means: one direction per class, confused pairs bent towards each other."""
    means = np.eye(len(CREMA_D_CLASSES))
    for i, j in CONFUSED[name]:
        means[:, i] = means[:, j] = 0.0
        means[[i, j], i] = means[[j, i], j] = (1.0, 0.5)
    return CLASS_SCALE[name] * means / np.linalg.norm(means, axis=0)


def build_modalities(
    task: Task, dims: dict[str, int], speakers: int, rng: np.random.Generator
) -> dict[str, Modality]:
    """The true parameters of both modalities; only the embedding and the offsets are random."""
    latent = LATENT_DIM[task]
    out = {}
    for name in MODALITIES:
        if dims[name] < latent:
            raise ValueError(f"{name}_dim={dims[name]} must be at least {latent} for task={task}")
        embed, _ = np.linalg.qr(rng.standard_normal((dims[name], latent)))
        offsets = SPEAKER_STD[name] * rng.standard_normal((speakers, dims[name]))
        means = _class_means(name) if task == "categorical" else np.diag(ATTR_LOADING[name])
        out[name] = Modality(name, NOISE_STD[name], SPEAKER_STD[name], embed, means, offsets)
    return out


def _validate(task: str, utterances: int, speakers: int, unpaired_share: float) -> None:
    if task not in LATENT_DIM:
        raise ValueError(f"task={task!r}; allowed: {sorted(LATENT_DIM)}")
    if speakers < 3:
        raise ValueError(f"speakers={speakers} must be at least 3 (one per split)")
    if utterances < speakers:
        raise ValueError(f"utterances={utterances} must be at least speakers={speakers}")
    if not 0.0 <= unpaired_share <= 1.0:
        raise ValueError(f"unpaired_share={unpaired_share} must be within [0, 1]")


def _speakers(task: Task, speakers: int, rng: np.random.Generator) -> pd.DataFrame:
    n_test = max(1, round(0.2 * speakers))
    n_dev = max(1, round(0.2 * speakers))
    split = np.array(["Train"] * (speakers - n_dev - n_test) + ["Development"] * n_dev)
    split = rng.permutation(np.concatenate([split, ["Test"] * n_test]))
    gender = np.where(rng.permutation(np.arange(speakers)) % 2 == 0, "Female", "Male")
    first = 1001 if task == "categorical" else 1
    return pd.DataFrame({"SpkrID": np.arange(speakers) + first, "Gender": gender, "split": split})


def _consensus(latent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Annotator vote shares in thousandths, (N, K) int, every row summing to exactly 1000."""
    k = len(CREMA_D_CLASSES)
    confusion = np.ones((k, k))
    for i, j in ANNOTATOR_CONFUSED:
        confusion[i, j] = confusion[j, i] = 6.0  # a wrong vote mostly lands on a look-alike
    np.fill_diagonal(confusion, 0.0)
    confusion /= confusion.sum(axis=1, keepdims=True)
    n = len(latent)
    n_votes = rng.integers(6, 11, size=n)
    p_true = rng.uniform(0.5, 0.95, size=n)
    cdf = np.cumsum(confusion, axis=1)[latent]
    counts = np.zeros((n, k))
    for v in range(10):
        wrong = rng.random(n) > p_true
        other = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), k - 1)
        counts[np.arange(n), np.where(wrong, other, latent)] += v < n_votes
    milli = np.round(1000 * counts / n_votes[:, None]).astype(np.int64)
    milli[np.arange(len(latent)), milli.argmax(axis=1)] += 1000 - milli.sum(axis=1)
    return milli


def _ratings(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean of 5-8 raters' integer ratings clip(round(y + noise), 1, 5); (N, 3) -> (N, 3)."""
    n_raters = rng.integers(5, 9, size=len(y))
    noisy = y[:, None, :] + RATER_STD * rng.standard_normal((len(y), 8, 3))
    rating = np.clip(np.floor(noisy + 0.5), 1, 5)
    used = np.arange(8)[None, :, None] < n_raters[:, None, None]
    return np.round((rating * used).sum(axis=1) / n_raters[:, None], 6)


def _utterance_ids(task: Task, table: pd.DataFrame) -> list[str]:
    if task == "categorical":
        codes = [CLASS_CODES[c] for c in table["latent"]]
        n = table.groupby(["SpkrID", "latent"]).cumcount() + 1
        return [f"{s}_SYN_{c}_{i:02d}" for s, c, i in zip(table["SpkrID"], codes, n, strict=True)]
    session = (table["SpkrID"] - 1) // 2 + 1
    gender = table["Gender"].str[0]
    return [
        f"SYN-S{s:02d}-{g}{p:02d}-{i + 1:04d}"
        for i, (s, g, p) in enumerate(zip(session, gender, table["SpkrID"], strict=True))
    ]


def _design(task: Task, utterances: int, speakers: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per utterance: speaker, split, duration, latent label and the written labels."""
    spk = _speakers(task, speakers, rng)
    who = rng.permutation(np.arange(utterances) % speakers)
    table = spk.iloc[who].reset_index(drop=True)
    table["speaker"] = who
    table["duration"] = rng.uniform(*DURATION_S, size=utterances)
    if task == "categorical":
        table["latent"] = rng.choice(len(CLASS_PRIOR), size=utterances, p=CLASS_PRIOR)
        milli = _consensus(table["latent"].to_numpy(), rng)
        table[CREMA_D_CLASSES] = milli / 1000
        table["hard"] = milli.argmax(axis=1)
    else:
        cov = ATTR_STD**2 * ATTR_CORR
        y = rng.multivariate_normal(np.full(3, ATTR_MEAN), cov, size=utterances)
        table[["y_act", "y_val", "y_dom"]] = y
        table[["EmoAct", "EmoVal", "EmoDom"]] = _ratings(y, rng)
    table["FileName"] = [f"{u}.wav" for u in _utterance_ids(task, table)]
    return table


def _mark_unpaired(table: pd.DataFrame, share: float, rng: np.random.Generator) -> None:
    """Drop one modality from `share` of the train utterances: half keep audio, half visual."""
    train = np.flatnonzero(table["split"].to_numpy() == "Train")
    chosen = rng.permutation(train)[: round(share * len(train))]
    table["has_audio"] = True
    table["has_visual"] = True
    table.loc[chosen[len(chosen) // 2 :], "has_audio"] = False
    table.loc[chosen[: len(chosen) // 2], "has_visual"] = False


def _signals(task: Task, mod: Modality, table: pd.DataFrame) -> np.ndarray:
    """Each utterance's latent signal mu_m(label), (N, L)."""
    if task == "categorical":
        return mod.means[:, table["latent"].to_numpy()].T
    return (table[["y_act", "y_val", "y_dom"]].to_numpy(float) - ATTR_MEAN) @ mod.means.T


def frames(
    mod: Modality, signal: np.ndarray, speaker: int, n_frames: int, rng: np.random.Generator
) -> np.ndarray:
    """One utterance's frames (T, D) float32 for a latent signal (L,) from one speaker."""
    dim = mod.embed.shape[0]
    noise = rng.standard_normal((n_frames, dim), dtype=np.float32) * np.float32(mod.noise_std)
    clean = envelope(n_frames)[:, None] * (mod.embed @ signal)[None, :] + mod.offsets[speaker]
    return (clean + noise).astype(np.float32)


def offset_free_sum(
    x: np.ndarray, noise_std: float, speaker_std: float
) -> tuple[np.ndarray, float]:
    """r (D,) = sum_t g_t x_t - kappa G sum_t x_t of frames x (T, D), and e = sum_t g_t^2 -
    kappa G^2: the envelope-weighted sum with the speaker offset integrated out (module docstring).
    """
    x = x.astype(np.float64)
    g = envelope(len(x))
    tau2 = speaker_std**2
    kappa = tau2 / (noise_std**2 + len(x) * tau2)
    return g @ x - kappa * g.sum() * x.sum(axis=0), float(g @ g - kappa * g.sum() ** 2)


def evidence(mod: Modality, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Sufficient statistics (z (L,), e) of frames (T, D): log p(x | mu) = mu.z - e |mu|^2 / 2
    + const, with the speaker offset integrated out (see the module docstring)."""
    r, e = offset_free_sum(x, mod.noise_std, mod.speaker_std)
    var = mod.noise_std**2
    return mod.embed.T @ r / var, e / var


def _write_frames(
    out: Path, task: Task, table: pd.DataFrame, mods: dict[str, Modality], seeds: list
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write every feature file; return the test utterances' evidence per modality, in order."""
    rngs = {name: np.random.default_rng(s) for name, s in zip(MODALITIES, seeds, strict=True)}
    signals = {name: _signals(task, mod, table) for name, mod in mods.items()}
    stats: dict[str, list[tuple[np.ndarray, float]]] = {name: [] for name in MODALITIES}
    rows = table[["FileName", "duration", "speaker", "split", "has_audio", "has_visual"]]
    step = max(1, len(table) // 10)
    for i, (file_name, duration, speaker, split, *keep) in enumerate(rows.itertuples(index=False)):
        for name, mod, has in zip(MODALITIES, mods.values(), keep, strict=True):
            n_frames = max(1, round(FPS[name] * duration))
            # Drawn even when not written, so the kept files match the fully paired corpus.
            x = frames(mod, signals[name][i], speaker, n_frames, rngs[name])
            if has:
                np.save(out / name / f"{file_name.removesuffix('.wav')}.npy", x)
            if split == "Test":
                stats[name].append(evidence(mod, x))
        if (i + 1) % step == 0:
            log.info("synthesised %d/%d utterances", i + 1, len(table))
    return {
        name: (np.array([z for z, _ in s]), np.array([e for _, e in s]))
        for name, s in stats.items()
    }


def class_posterior(
    mods: dict[str, Modality], stats: dict[str, tuple[np.ndarray, np.ndarray]], condition: str
) -> np.ndarray:
    """Posterior over the latent class (N, K) given the condition's modalities."""
    logp = np.log(CLASS_PRIOR)[None, :]
    for name in MODALITIES if condition == "av" else (condition,):
        z, e = stats[name]
        means = mods[name].means
        logp = logp + z @ means - 0.5 * e[:, None] * np.sum(means**2, axis=0)[None, :]
    return np.exp(logp - logsumexp(logp, axis=1, keepdims=True))


def attribute_prediction(
    mods: dict[str, Modality], stats: dict[str, tuple[np.ndarray, np.ndarray]], condition: str
) -> np.ndarray:
    """Posterior mean of each written (mean-rating) label, (N, 3), given the condition."""
    n = len(next(iter(stats.values()))[1])
    precision = np.broadcast_to(np.linalg.inv(ATTR_STD**2 * ATTR_CORR), (n, 3, 3)).copy()
    linear = np.zeros((n, 3))
    for name in MODALITIES if condition == "av" else (condition,):
        z, e = stats[name]
        loading = mods[name].means
        precision += e[:, None, None] * (loading.T @ loading)[None]
        linear += z @ loading
    cov = np.linalg.inv(precision)
    mean = ATTR_MEAN + np.einsum("nij,nj->ni", cov, linear)
    std = np.sqrt(np.diagonal(cov, axis1=1, axis2=2) + RATER_STD**2)
    # A rating exceeds level k when y + rater noise >= k + 0.5; E[rating] = 1 + sum_k P(> k).
    levels = np.arange(1, 5)[None, None, :] + 0.5
    return 1.0 + np.sum(1.0 - ndtr((levels - mean[..., None]) / std[..., None]), axis=-1)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out={out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out={out} is not empty; pass overwrite=True (--overwrite) to replace it"
            )
        # Only what this module writes is removed; anything else in the folder is left alone.
        for name in MODALITIES:
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("labels.csv", "ideal.json"):
            (out / name).unlink(missing_ok=True)
    for name in MODALITIES:
        (out / name).mkdir(parents=True, exist_ok=True)


def _counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts = {}
    for split, key in SPLITS.items():
        rows = table[table["split"] == split]
        a, v = rows["has_audio"], rows["has_visual"]
        counts[key] = {
            "av": int((a & v).sum()),
            "audio": int((a & ~v).sum()),
            "visual": int((~a & v).sum()),
        }
    return counts


def write_corpus(
    out: str | Path,
    *,
    utterances: int,
    seed: int = 0,
    task: Task = "categorical",
    audio_dim: int = 1024,
    visual_dim: int = 1408,
    unpaired_share: float = 0.0,
    speakers: int = 12,
    overwrite: bool = False,
) -> CorpusSummary:
    """Write a synthetic corpus (labels.csv, audio/, visual/, ideal.json) to `out`."""
    _validate(task, utterances, speakers, unpaired_share)
    out = Path(out)
    _prepare(out, overwrite)
    design_seed, model_seed, *frame_seeds = np.random.SeedSequence(seed).spawn(4)
    design_rng = np.random.default_rng(design_seed)
    table = _design(task, utterances, speakers, design_rng)
    _mark_unpaired(table, unpaired_share, design_rng)
    dims = {"audio": audio_dim, "visual": visual_dim}
    mods = build_modalities(task, dims, speakers, np.random.default_rng(model_seed))
    stats = _write_frames(out, task, table, mods, frame_seeds)
    table["Split_Set"] = table["split"]
    columns = CATEGORICAL_COLUMNS if task == "categorical" else ATTRIBUTE_COLUMNS
    table[columns].to_csv(out / "labels.csv", index=False)
    test = table[table["split"] == "Test"].reset_index(drop=True)
    settings = {"seed": seed, "utterances": utterances, "speakers": speakers}
    settings |= {"audio_dim": audio_dim, "visual_dim": visual_dim, "unpaired_share": unpaired_share}
    # Imported here: vavl.synthetic_ideal builds on this module's model and posterior.
    from vavl.synthetic_ideal import ideal_report

    ideal = ideal_report(task, test, mods, stats, settings)
    (out / "ideal.json").write_text(json.dumps(ideal, indent=2, sort_keys=True) + "\n")
    return CorpusSummary(out=out, task=task, counts=_counts(table), ideal=ideal)


def read_ideal(path: str | Path) -> dict:
    """The ideal scores of a corpus: `path` is the corpus folder or its ideal.json."""
    path = Path(path)
    path = path / "ideal.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no ideal scores at {path}")
    return json.loads(path.read_text())
