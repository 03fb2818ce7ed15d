"""A small synthetic corpus with known corruptions, shared by the store's integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vavl.synthetic import write_corpus

AUDIO_DIM, VISUAL_DIM = 16, 12
SPLITS = {"Train": "train", "Development": "dev", "Test": "test"}


@dataclass(frozen=True)
class Corpus:
    root: Path
    labels: str
    audio: str
    visual: str
    rejects: dict[str, str]  # id -> expected reason code
    duplicate: str  # an id whose first row is valid and whose repeated row is rejected
    valid: dict[str, str]  # id -> split, for every utterance that must reach the store

    def frames(self, modality: str, uid: str) -> np.ndarray | None:
        path = self.root / modality / f"{uid}.npy"
        return np.load(path) if path.exists() else None


def _paired_ids(root: Path, table: pd.DataFrame) -> list[str]:
    ids = [f.rsplit(".", 1)[0] for f in table["FileName"]]
    return [
        u
        for u in ids
        if (root / "audio" / f"{u}.npy").exists() and (root / "visual" / f"{u}.npy").exists()
    ]


def _corrupt(root: Path, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], str]:
    """One utterance per bad-input class; returns the edited label table and id -> reason."""
    victims = iter(_paired_ids(root, table)[3:])  # the first few stay valid for dim probing
    rejects: dict[str, str] = {}

    def put(modality: str, array: np.ndarray | bytes, reason: str) -> None:
        uid = next(victims)
        path = root / modality / f"{uid}.npy"
        if isinstance(array, bytes):
            path.write_bytes(array)
        else:
            np.save(path, array)
        rejects[uid] = reason

    put("audio", np.full((4, AUDIO_DIM), np.nan, np.float32), "non_finite")
    put("audio", np.zeros((4, AUDIO_DIM + 3), np.float32), "wrong_dim")
    put("visual", np.zeros((4, VISUAL_DIM, 2), np.float32), "wrong_rank")
    put("visual", np.zeros((0, VISUAL_DIM), np.float32), "zero_frames")
    put("audio", b"\x93NUMPY garbage", "unreadable")
    gone = next(victims)
    (root / "audio" / f"{gone}.npy").unlink()
    (root / "visual" / f"{gone}.npy").unlink()
    rejects[gone] = "no_features"
    ids = table["FileName"].str.rsplit(".", n=1).str[0]
    for reason, edit in (
        ("unknown_split", ("Split_Set", "Holdout")),
        ("label_out_of_range", ("angry", "1.5")),
        ("soft_label_sum", ("sad", "0.9")),
    ):
        uid = next(victims)
        table.loc[ids == uid, edit[0]] = edit[1]
        rejects[uid] = reason
    duplicate = next(victims)  # its first occurrence stays valid
    return pd.concat([table, table[ids == duplicate]], ignore_index=True), rejects, duplicate


@pytest.fixture(scope="session")
def corrupted_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(
        root,
        utterances=48,
        seed=3,
        audio_dim=AUDIO_DIM,
        visual_dim=VISUAL_DIM,
        unpaired_share=0.25,
        speakers=6,
        overwrite=True,
    )
    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    table, rejects, duplicate = _corrupt(root, table)
    table.to_csv(root / "labels.csv", index=False)
    first = table.drop_duplicates("FileName")
    valid = {
        f.rsplit(".", 1)[0]: SPLITS[s]
        for f, s in zip(first["FileName"], first["Split_Set"], strict=True)
        if f.rsplit(".", 1)[0] not in rejects
    }
    return Corpus(
        root,
        str(root / "labels.csv"),
        str(root / "audio"),
        str(root / "visual"),
        rejects,
        duplicate,
        valid,
    )


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for one test, also set as MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
