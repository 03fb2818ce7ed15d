"""Ingest checks that fail before any Ray work: columns, target, every row rejected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vavl import storage
from vavl.store import StoreError, ingest_corpus

HEADER = "FileName,angry,sad,disgust,fear,neutral,happy,SpkrID,Gender,Split_Set"


def tiny_corpus(root: Path, rows: list[str]) -> tuple[str, str, str]:
    """labels.csv + one audio file per row id (enough for the pre-Ray checks)."""
    (root / "audio").mkdir(parents=True)
    (root / "visual").mkdir()
    (root / "labels.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    for row in rows:
        uid = row.split(",")[0].rsplit(".", 1)[0]
        np.save(root / "audio" / f"{uid}.npy", np.zeros((3, 4), np.float32))
    return str(root / "labels.csv"), str(root / "audio"), str(root / "visual")


def test_labels_without_required_columns_fail_at_once_and_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("FileName,angry,SpkrID\na.wav,1,1\n")
    with pytest.raises(StoreError, match=r"lacks required column\(s\) \['sad', "):
        ingest_corpus(
            str(tmp_path / "labels.csv"), str(tmp_path), str(tmp_path), str(tmp_path / "store")
        )
    assert not (tmp_path / "store").exists()


def test_all_rows_rejected_fails_and_leaves_no_store(tmp_path: Path) -> None:
    labels, audio, visual = tiny_corpus(
        tmp_path, ["a.wav,1,0,0,0,0,0,1,Male,Holdout", "b.wav,0.5,0,0,0,0,0,1,Male,Train"]
    )
    with pytest.raises(StoreError, match=r"every one of the 2 utterances .* was rejected"):
        ingest_corpus(labels, audio, visual, str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_existing_store_or_folder_is_not_overwritten_without_overwrite(tmp_path: Path) -> None:
    labels, audio, visual = tiny_corpus(tmp_path / "c", ["a.wav,1,0,0,0,0,0,1,Male,Train"])
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text("{}")
    with pytest.raises(StoreError, match="already holds a feature store; pass overwrite=True"):
        ingest_corpus(labels, audio, visual, str(store))
    (store / "manifest.json").unlink()
    (store / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"files but no manifest\.json"):
        ingest_corpus(labels, audio, visual, str(store))
    assert (store / "notes.txt").read_text() == "mine"


def test_bad_arguments_fail_before_reading_anything(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="frame_dtype 'bfloat16'"):
        ingest_corpus("missing.csv", "a", "v", str(tmp_path / "s"), frame_dtype="bfloat16")
    with pytest.raises(StoreError, match="shard_rows must be a positive integer, got 0"):
        ingest_corpus("missing.csv", "a", "v", str(tmp_path / "s"), shard_rows=0)
    with pytest.raises(StoreError, match=r"labels file missing\.csv does not exist"):
        ingest_corpus("missing.csv", "a", "v", str(tmp_path / "s"))


def test_storage_redacts_and_refuses_credentials_in_uris() -> None:
    assert storage.redact("s3://key:secret@bucket/a/b?x=1") == "s3://bucket/a/b"
    with pytest.raises(storage.StorageError) as err:
        storage.resolve("s3://key:secret@bucket/a")
    assert "secret" not in str(err.value)


def test_storage_write_list_move_delete_on_local_disk(tmp_path: Path) -> None:
    fs, root = storage.resolve(f"file://{tmp_path}/x")
    storage.write_bytes(fs, storage.join(root, "d", "f.txt"), b"hello")
    assert storage.read_bytes(fs, f"{root}/d/f.txt") == b"hello"
    assert storage.list_files(fs, root) == [f"{root}/d/f.txt"]  # no temporary file left
    storage.move(fs, f"{root}/d/f.txt", f"{root}/e/g.txt")
    assert storage.sha256(fs, f"{root}/e/g.txt")[1] == 5
    assert not storage.exists(fs, f"{root}/d/f.txt")
    storage.delete_prefix(fs, root)
    assert storage.list_files(fs, root) == []
