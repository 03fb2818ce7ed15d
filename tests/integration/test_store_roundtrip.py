"""Ingest a corrupted synthetic corpus with Ray Data and read every row back (local disk and S3)."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq
import pytest

from vavl import storage
from vavl.console import Progress
from vavl.store import FeatureStore, StoreError, ingest_corpus, iter_batches
from vavl.store import manifest as M

if TYPE_CHECKING:  # tests/integration is not a package: the fixture's type, for readers only
    from conftest import Corpus

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]


def read_back(store: FeatureStore, split: str, *, via_iterator: bool = False) -> dict[str, dict]:
    """id -> frames and labels of every row of a split, through the padded-batch reader."""
    spec = store.batch_spec(normalize=False)
    source = store.dataset(split)
    source = source.iterator() if via_iterator else source
    rows: dict[str, dict] = {}
    for batch in iter_batches(source, spec, batch_size=5, shuffle=True, seed=0):
        for i, uid in enumerate(batch.ids):
            assert uid not in rows, f"{uid} read twice"
            t_a, t_v = int(batch.audio_mask[i].sum()), int(batch.visual_mask[i].sum())
            assert batch.audio[i, t_a:].abs().sum() == 0 and batch.visual[i, t_v:].abs().sum() == 0
            rows[uid] = dict(
                audio=batch.audio[i, :t_a].numpy() if batch.has_audio[i] else None,
                visual=batch.visual[i, :t_v].numpy() if batch.has_visual[i] else None,
                label=int(batch.label[i]),
                soft=batch.soft_label[i].numpy(),
            )
    return rows


def expected_counts(corpus: Corpus) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for uid, split in corpus.valid.items():
        a = (corpus.root / "audio" / f"{uid}.npy").exists()
        v = (corpus.root / "visual" / f"{uid}.npy").exists()
        c = counts.setdefault(split, dict(rows=0, av=0, audio=0, visual=0))
        c["rows"] += 1
        c["av" if a and v else "audio" if a else "visual"] += 1
    return counts


def check_roundtrip(store: FeatureStore, corpus: Corpus, exact: bool) -> None:
    for split in store.splits():
        rows = read_back(store, split, via_iterator=split == "dev")
        assert sorted(rows) == sorted(u for u, s in corpus.valid.items() if s == split)
        assert store.dataset(split).count() == store.count(split) == len(rows)
        for uid, row in rows.items():
            for modality in ("audio", "visual"):
                source = corpus.frames(modality, uid)
                if source is None:
                    assert row[modality] is None
                elif exact:
                    np.testing.assert_array_equal(row[modality], source)
                else:  # float16 storage: within half-precision rounding (rel. 2^-11)
                    np.testing.assert_allclose(row[modality], source, rtol=2**-11, atol=1e-7)
            assert row["label"] == int(np.argmax(row["soft"]))


def check_speaker_stats(store: FeatureStore, corpus: Corpus) -> None:
    """speakers.parquet: each speaker's frame mean over ALL its valid rows (every split), and the
    manifest's within-speaker std over the train split's frames, each centred on its speaker."""
    spec = store.batch_spec(normalize=False)
    speaker_of = {
        uid: speaker
        for split in store.splits()
        for batch in iter_batches(store.dataset(split), spec, batch_size=64)
        for uid, speaker in zip(batch.ids, batch.speakers, strict=True)
    }
    by_speaker: dict[str, list[np.ndarray]] = {}
    centred_train = []
    for uid in corpus.valid:
        frames = corpus.frames("audio", uid)
        if frames is not None:
            by_speaker.setdefault(speaker_of[uid], []).append(frames.astype(np.float16))
    means = store.speaker_means()["audio"]
    assert sorted(means) == sorted(by_speaker)
    for speaker, parts in by_speaker.items():
        every = np.concatenate(parts).astype(float)
        np.testing.assert_allclose(means[speaker], every.mean(0), rtol=1e-5, atol=1e-6)
        train = [
            f.astype(np.float16).astype(float)
            for u, s in corpus.valid.items()
            if s == "train"
            and speaker_of[u] == speaker
            and (f := corpus.frames("audio", u)) is not None
        ]
        if train:
            own = np.concatenate(train)
            centred_train.append(own - own.mean(0))
    within = np.concatenate(centred_train).std(0)
    np.testing.assert_allclose(
        store.manifest["normalization"]["audio"]["within_speaker_std"], within, rtol=1e-9
    )
    assert store.manifest["speakers"]["count"] == len(by_speaker)
    few = store.speaker_means(min_utterances=10**6)
    assert few == {}  # no speaker has that many utterances: all centred on the global mean


def check_rejects(store_fs_root: tuple, manifest: dict, corpus: Corpus) -> None:
    fs, root = store_fs_root
    table = pq.read_table(storage.join(root, "rejects.parquet"), filesystem=fs).to_pylist()
    got = sorted((r["id"], r["reason"]) for r in table)
    want = sorted([*corpus.rejects.items(), (corpus.duplicate, "duplicate_id")])
    assert got == want
    reasons = [r for _, r in want]
    assert manifest["rejects"]["by_reason"] == {r: reasons.count(r) for r in set(reasons)}


def test_local_float16_roundtrip_with_rejects_and_stats(
    ray_cluster: None, corrupted_corpus: Corpus, tmp_path: Path
) -> None:
    out = str(tmp_path / "store")
    shown = io.StringIO()  # not a terminal: plain lines, every one with every_s=0
    report = ingest_corpus(
        corrupted_corpus.labels,
        corrupted_corpus.audio,
        corrupted_corpus.visual,
        out,
        shard_rows=4,
        row_group_rows=2,
        progress=Progress(shown, every_s=0.0),
    )
    lines = shown.getvalue().splitlines()
    loaded = [line for line in lines if line.startswith("loaded and checked ")]
    assert loaded and re.match(r"loaded and checked (\d+)/\1 utterances \(100%\)", loaded[-1])
    assert re.match(r"read feature headers of \d+ files", lines[0])
    assert lines[-1].startswith(f"written {report.accepted}/{report.accepted} utterances (100%)")
    store = FeatureStore.open(out, verify_checksums=True)
    manifest = store.manifest
    assert report.manifest_id == store.manifest_id == M.manifest_id(manifest)
    assert manifest["counts"] == expected_counts(corrupted_corpus)
    assert (store.audio_dim, store.visual_dim) == (16, 12)
    for split in store.splits():  # several shards per split, none above shard_rows
        shards = [s for s in manifest["shards"] if s["split"] == split]
        assert len(shards) >= 2 and all(0 < s["rows"] <= 4 for s in shards)
        assert sum(s["rows"] for s in shards) == store.count(split)
        for path in store.shard_paths(split):  # row groups of row_group_rows, not whole shards
            meta = pq.ParquetFile(path).metadata
            groups = [meta.row_group(k).num_rows for k in range(meta.num_row_groups)]
            assert max(groups) <= 2 and len(groups) == -(-meta.num_rows // 2)
    check_roundtrip(store, corrupted_corpus, exact=False)
    check_rejects(storage.resolve(out), manifest, corrupted_corpus)
    # Normalisation: frame-weighted over the train split's stored (float16) frames only.
    train = [u for u, s in corrupted_corpus.valid.items() if s == "train"]
    frames = [corrupted_corpus.frames("audio", u) for u in train]
    every = np.concatenate([f.astype(np.float16) for f in frames if f is not None]).astype(float)
    stats = manifest["normalization"]["audio"]
    assert stats["frames"] == len(every)
    np.testing.assert_allclose(stats["mean"], every.mean(0), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], every.std(0), rtol=1e-9)
    check_speaker_stats(store, corrupted_corpus)
    # An existing store is never replaced without overwrite=True.
    with pytest.raises(StoreError, match="already holds a feature store"):
        ingest_corpus(corrupted_corpus.labels, corrupted_corpus.audio, corrupted_corpus.visual, out)
    assert FeatureStore.open(out).manifest_id == store.manifest_id


def test_s3_float32_roundtrip_keeps_secrets_out(
    ray_cluster: None, s3_server, corrupted_corpus: Corpus, capfd: pytest.CaptureFixture
) -> None:
    prefix = f"stores/{uuid.uuid4().hex}"
    out = f"s3://{s3_server.bucket}/{prefix}"
    ingest_corpus(
        corrupted_corpus.labels,
        corrupted_corpus.audio,
        corrupted_corpus.visual,
        out,
        shard_rows=5,
        frame_dtype="float32",
    )
    listing = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
    keys = {o["Key"].removeprefix(f"{prefix}/") for o in listing.get("Contents", [])}
    keys = {k for k in keys if k and not k.endswith("/")}  # pyarrow's empty folder markers
    store = FeatureStore.open(out, verify_checksums=True)
    assert keys == {
        "manifest.json",
        "rejects.parquet",
        "speakers.parquet",
        *(s["path"] for s in store.manifest["shards"]),
    }
    check_roundtrip(store, corrupted_corpus, exact=True)
    check_rejects(storage.resolve(out), store.manifest, corrupted_corpus)
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=f"{prefix}/manifest.json")
    text = body["Body"].read().decode()
    assert json.loads(text)["manifest_id"] == store.manifest_id
    captured = capfd.readouterr()
    for secret in (s3_server.secret_key, s3_server.access_key):
        assert secret not in text
        assert secret not in captured.out + captured.err


def test_interrupted_ingest_leaves_no_manifest_and_open_refuses(
    ray_cluster: None, corrupted_corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash before the manifest commit")

    monkeypatch.setattr(M, "commit_manifest", crash)
    out = tmp_path / "store"
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_corpus(
            corrupted_corpus.labels,
            corrupted_corpus.audio,
            corrupted_corpus.visual,
            str(out),
            shard_rows=8,
        )
    assert list(out.glob("*/part-*.parquet"))  # the shards were written ...
    assert not (out / "manifest.json").exists()  # ... but never committed
    assert not list(out.glob("_tmp-*"))
    with pytest.raises(StoreError, match=r"has no manifest\.json: its ingest did not finish"):
        FeatureStore.open(str(out))


def test_ingest_cli_prints_its_stage_lines_and_summary_and_no_ray_data_chatter(
    ray_cluster: None, corrupted_corpus: Corpus, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    spec = importlib.util.spec_from_file_location("ingest_cli", REPO / "pipelines" / "ingest.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    capfd.readouterr()
    argv = ["--labels", corrupted_corpus.labels, "--audio", corrupted_corpus.audio]
    argv += ["--visual", corrupted_corpus.visual, "--out", str(tmp_path / "store")]
    assert cli.main([*argv, "--shard-rows", "8"]) == 0
    out, err = capfd.readouterr()
    stages = ["label rows", "loaded and checked", "wrote train", "wrote dev", "wrote test"]
    rejected = len(corrupted_corpus.rejects) + 1  # + the repeated id
    stages += ["normalisation statistics", "store ", "split", f"rejected {rejected} of 49 label"]
    positions = [next(i for i, line in enumerate(out.splitlines()) if s in line) for s in stages]
    assert positions == sorted(positions)
    assert len(out.splitlines()) < 30
    for chatter in ("INFO", "Total Progress", "Starting execution", "Progress bars disabled"):
        assert chatter not in out + err
    # --quiet: the summary only.
    assert cli.main([*argv, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert "to load" not in out and "loaded and checked" not in out
    assert out.startswith("store ") and "rejected " in out
