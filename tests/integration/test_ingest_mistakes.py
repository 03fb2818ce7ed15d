"""Ingest says what it found: a corpus without visual features, a first file of the wrong size,
3-decimal soft labels, frame rates by flag, a refused ingest that loses nothing, and staging
prefixes of interrupted ingests removed by the next one (local disk, through Ray Data)."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vavl.objectives import cross_entropy_loss
from vavl.store import FeatureStore, StoreError, ingest_corpus
from vavl.store import publish as P
from vavl.store import schema as S

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
HEADER = "FileName,angry,sad,disgust,fear,neutral,happy,SpkrID,Gender,Split_Set"
SPLITS = ["Train"] * 6 + ["Development"] * 3 + ["Test"] * 3
THIRDS = "0.167,0.167,0.167,0.167,0.167,0.167"  # sums to 1.002


def audio_only_corpus(root: Path) -> tuple[str, str]:
    """12 utterances with 6-dim audio, except the first label row's (5-dim); no visual folder.
    u01 carries six shares of 0.167. Returns the labels CSV and the audio folder."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    lines = [HEADER]
    for i, split in enumerate(SPLITS):
        uid = f"u{i:02d}"
        dim = 5 if i == 0 else 6
        np.save(root / "audio" / f"{uid}.npy", rng.normal(size=(3 + i % 4, dim)).astype("f4"))
        shares = THIRDS if i == 1 else ",".join("1" if k == i % 6 else "0" for k in range(6))
        lines.append(f"{uid}.wav,{shares},s{i % 3},Female,{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return str(root / "labels.csv"), str(root / "audio")


def stale_staging(store: Path) -> Path:
    """A `_tmp-*` prefix as an ingest killed long ago leaves it."""
    prefix = store / "_tmp-killed"
    (prefix / "train").mkdir(parents=True)
    (prefix / "train" / "part-0.parquet").write_bytes(b"half a shard")
    then = time.time() - P.STALE_STAGING_SECONDS - 60
    for path in (prefix / "train" / "part-0.parquet", prefix / "train", prefix):
        os.utime(path, (then, then))
    return prefix


def ingest_cli():
    spec = importlib.util.spec_from_file_location("ingest_cli", REPO / "pipelines" / "ingest.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def stored_row(store: Path, uid: str) -> dict:
    for shard in sorted(store.glob("*/part-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            if row["id"] == uid:
                return row
    raise AssertionError(f"{uid} not in {store}")


def test_audio_only_corpus_refused_overwrite_and_leftovers(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    labels, audio = audio_only_corpus(tmp_path / "corpus")
    out = tmp_path / "store"
    old = stale_staging(out)

    # 1. No visual folder, as told; the 5-dim first file is the one rejected, not the others.
    report = ingest_corpus(labels, audio, None, str(out), no_visual=True, audio_fps=100.0)
    manifest = FeatureStore.open(str(out), verify_checksums=True).manifest
    features = manifest["features"]
    assert features["audio"] | {"extractor": None} == dict(
        dim=6, frame_rate=100.0, frame_rate_source="flag", extractor=None
    )
    assert (features["visual"]["dim"], features["visual"]["frame_rate"]) == (0, 30.0)
    assert features["visual"]["frame_rate_source"] == "default"
    assert manifest["rejects"]["by_reason"] == {"wrong_dim": 1}
    assert pq.read_table(out / S.REJECTS_NAME)["id"].to_pylist() == ["u00"]
    assert sum(c["rows"] for c in manifest["counts"].values()) == 11
    assert all(c["rows"] == c["audio"] for c in manifest["counts"].values())
    summary = report.summary_table()
    assert "audio: 6 features/frame at 100 frames/s (flag); 11 of 12 files" in summary
    assert "others: 5 in 1" in summary and "visual: none" in summary
    assert f"rejected 1 of 12 label rows, listed in {out / S.REJECTS_NAME}" in summary
    assert not old.exists() and not list(out.glob("_tmp-*"))
    # The 3-decimal shares were accepted, stored summing to 1, and the loss takes them.
    soft = torch.tensor([stored_row(out, "u01")["soft_label"]])
    assert abs(float(soft.sum()) - 1.0) < 1e-6
    assert torch.isfinite(cross_entropy_loss(torch.zeros(1, 6), soft))

    # 2. A wrong --audio-dim rejects every row as wrong_dim: refused, the old store intact.
    first_id = manifest["manifest_id"]
    with pytest.raises(StoreError) as err:
        ingest_corpus(labels, audio, None, str(out), no_visual=True, audio_dim=7, overwrite=True)
    message = str(err.value)
    assert "12 of the 12 label rows" in message and "rejected as wrong_dim" in message
    assert f"{audio}/u00.npy): feature size 5, expected 7" in message
    assert f"listed in {out / S.FAILED_REJECTS_NAME}" in message
    assert FeatureStore.open(str(out), verify_checksums=True).manifest_id == first_id
    assert len(pq.read_table(out / S.FAILED_REJECTS_NAME)) == 12
    assert not list(out.glob("_tmp-*"))

    # 3. The command line overwrites it, printing where the rejects are; leftovers go.
    old = stale_staging(out)
    argv = ["--labels", labels, "--audio", audio, "--no-visual", "--out", str(out)]
    assert ingest_cli().main([*argv, "--audio-fps", "100", "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert f"listed in {out / S.REJECTS_NAME}" in printed
    assert not old.exists() and not (out / S.FAILED_REJECTS_NAME).exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "dev",
        "manifest.json",
        "rejects.parquet",
        "speakers.parquet",
        "test",
        "train",
    ]
