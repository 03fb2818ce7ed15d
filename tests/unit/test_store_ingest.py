"""Ingest checks that fail before any Ray work: columns, target, every row rejected."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vavl import storage
from vavl.store import StoreError, ingest_corpus
from vavl.store import publish as P
from vavl.store import schema as S

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
    store = tmp_path / "store"
    with pytest.raises(StoreError, match=r"every one of the 2 label rows .* was rejected") as err:
        ingest_corpus(labels, audio, visual, str(store))
    assert f"listed in {store / S.FAILED_REJECTS_NAME}" in str(err.value)
    # Only the rejects, under a name no reader takes for a store.
    assert sorted(p.name for p in store.iterdir()) == [S.FAILED_REJECTS_NAME]
    assert len(pq.read_table(store / S.FAILED_REJECTS_NAME)) == 2


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


def test_most_rows_rejected_for_one_label_reason_fails_before_ray_naming_it(
    tmp_path: Path,
) -> None:
    rows = [f"u{i}.wav,1,0,0,0,0,0,1,Male,Holdout" for i in range(3)]
    labels, audio, visual = tiny_corpus(tmp_path, [*rows, "ok.wav,1,0,0,0,0,0,1,Male,Train"])
    with pytest.raises(StoreError) as err:
        ingest_corpus(labels, audio, visual, str(tmp_path / "store"))
    message = str(err.value)
    assert "3 of the 4 label rows" in message and "rejected as unknown_split" in message
    assert "e.g. labels line 2" in message and "'Holdout'" in message
    assert not (tmp_path / "store" / S.MANIFEST_NAME).exists()


def test_a_missing_feature_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    labels, audio, _ = tiny_corpus(tmp_path, ["a.wav,1,0,0,0,0,0,1,Male,Train"])
    gone = str(tmp_path / "no-such-visual")
    with pytest.raises(StoreError, match=rf"visual folder {gone} does not exist; .*--no-visual"):
        ingest_corpus(labels, audio, gone, str(tmp_path / "store"))
    with pytest.raises(StoreError, match=r"audio folder .*labels\.csv is a file"):
        ingest_corpus(labels, labels, None, str(tmp_path / "store"), no_visual=True)
    assert not (tmp_path / "store").exists()


def test_modality_flags_must_agree_with_the_folders(tmp_path: Path) -> None:
    out = str(tmp_path / "s")
    with pytest.raises(StoreError, match=r"no visual folder given: .*no_visual=True"):
        ingest_corpus("x.csv", "a", None, out)
    with pytest.raises(StoreError, match=r"no_visual=True .* but visual_dir, visual_fps given"):
        ingest_corpus("x.csv", "a", "v", out, no_visual=True, visual_fps=25.0)
    with pytest.raises(StoreError, match="a corpus needs one modality at least"):
        ingest_corpus("x.csv", None, None, out, no_audio=True, no_visual=True)
    with pytest.raises(StoreError, match=r"audio_fps must be a positive number .* got 0"):
        ingest_corpus("x.csv", "a", "v", out, audio_fps=0)
    with pytest.raises(StoreError, match=r"visual_dim must be a positive integer, got -3"):
        ingest_corpus("x.csv", "a", "v", out, visual_dim=-3)


def stage(root: Path, name: str, age_s: float) -> Path:
    """A staging prefix under `root` whose files were last written `age_s` seconds ago."""
    folder = root / name / "train"
    folder.mkdir(parents=True)
    part = folder / "part-0.parquet"
    part.write_bytes(b"x" * 10)
    then = time.time() - age_s
    for path in (part, folder, folder.parent):
        os.utime(path, (then, then))
    return folder.parent


def test_only_stale_staging_prefixes_and_failed_rejects_count_as_leftovers(tmp_path: Path) -> None:
    fs, root = storage.resolve(str(tmp_path))
    old = stage(tmp_path, "_tmp-old", P.STALE_STAGING_SECONDS + 60)
    (tmp_path / S.FAILED_REJECTS_NAME).write_bytes(b"")
    P.check_target(fs, root, str(tmp_path), overwrite=False)  # leftovers do not count...
    live = stage(tmp_path, "_tmp-live", 5)
    assert sorted(P.remove_leftovers(fs, root)) == sorted([S.FAILED_REJECTS_NAME, old.name])
    assert [p.name for p in tmp_path.iterdir()] == [live.name]  # ... a running ingest's stays
    with pytest.raises(StoreError, match=r"another ingest may be writing there .*_tmp-live"):
        P.check_target(fs, root, str(tmp_path), overwrite=False)
    P.check_target(fs, root, str(tmp_path), overwrite=True)
    assert P.remove_leftovers(fs, root) == [] and live.exists()


def test_ingest_cli_exits_2_naming_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import importlib.util

    labels, _, _ = tiny_corpus(tmp_path, ["a.wav,1,0,0,0,0,0,1,Male,Train"])
    script = Path(__file__).resolve().parents[2] / "pipelines" / "ingest.py"
    spec = importlib.util.spec_from_file_location("ingest_cli", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    gone = tmp_path / "audio-features"
    argv = ["--labels", labels, "--audio", str(gone), "--no-visual", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    assert f"ingest failed: audio folder {gone} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_printed_uris_hide_passwords_and_secret_query_values() -> None:
    shown = storage.hide_password(
        "postgresql://mlflow:s3cret@db.internal:5432/runs?sslmode=require"
    )
    assert shown == "postgresql://mlflow:***@db.internal:5432/runs?sslmode=require"
    assert storage.hide_password("http://h:5000/?token=abc&x=1") == "http://h:5000/?token=***&x=1"
    assert storage.hide_password("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert storage.hide_password("postgresql://u@/db?host=/tmp") == "postgresql://u@/db?host=/tmp"
    from vavl import tracking

    line = tracking.ui_command("postgresql://mlflow:s3cret@db/runs")
    assert "s3cret" not in line and "postgresql://mlflow:***@db/runs" in line


def test_local_store_paths_are_made_absolute_for_workers(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("data/store") == str(tmp_path / "data" / "store")
    assert storage.absolute("file:///x/y") == "/x/y"
    assert storage.absolute("s3://bucket/a/b") == "s3://bucket/a/b"
