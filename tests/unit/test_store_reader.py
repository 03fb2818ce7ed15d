"""Reader without Ray: collate (numpy and pyarrow rows), shard reads, opening refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vavl import storage
from vavl.batch import Batch
from vavl.store import BatchSpec, FeatureStore, StoreError, collate
from vavl.store import manifest as M
from vavl.store import reader as R
from vavl.store import schema as S
from vavl.store.source import ShardSource, read_shard


def rows_of(audio: list[np.ndarray | None], visual: list[np.ndarray | None], dtype: str) -> dict:
    def blobs(arrays: list[np.ndarray | None]) -> np.ndarray:
        out = np.empty(len(arrays), dtype=object)
        out[:] = [None if a is None else a.astype(dtype).tobytes() for a in arrays]
        return out

    n = len(audio)
    return {
        "id": np.array([f"u{i}" for i in range(n)], dtype=object),
        "speaker": np.array(["s"] * n, dtype=object),
        "label": np.arange(n, dtype=np.int32),
        "soft_label": np.stack([np.eye(3, dtype=np.float32)[i % 3] for i in range(n)]),
        "attributes": np.array([None] * n, dtype=object),
        "audio": blobs(audio),
        "audio_frames": np.array([0 if a is None else len(a) for a in audio], np.int32),
        "visual": blobs(visual),
        "visual_frames": np.array([0 if v is None else len(v) for v in visual], np.int32),
    }


def spec(normalize: bool, dtype: str = "float32") -> BatchSpec:
    return BatchSpec(
        audio_dim=2,
        visual_dim=3,
        frame_dtype=dtype,
        task_kind="categorical",
        num_classes=3,
        normalize=normalize,
        audio_mean=np.array([1.0, -1.0], np.float32) if normalize else None,
        audio_std=np.array([2.0, 0.5], np.float32) if normalize else None,
        visual_mean=np.zeros(3, np.float32) if normalize else None,
        visual_std=np.full(3, 4.0, np.float32) if normalize else None,
    )


A0 = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
A1 = np.array([[7.0, 8.0]], np.float32)
V1 = np.full((2, 3), 8.0, np.float32)


def test_collate_pads_to_longest_with_masks_and_zeroed_absent_rows() -> None:
    batch = collate(rows_of([A0, A1, None], [None, V1, None], "float32"), spec(False))
    assert batch.ids == ["u0", "u1", "u2"] and len(batch) == 3
    assert batch.audio.shape == (3, 3, 2) and batch.visual.shape == (3, 2, 3)
    assert batch.audio_mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert batch.visual_mask.tolist() == [[False, False], [True, True], [False, False]]
    assert batch.has_audio.tolist() == [True, True, False]
    assert batch.has_visual.tolist() == [False, True, False]
    np.testing.assert_array_equal(batch.audio[0].numpy(), A0)
    np.testing.assert_array_equal(batch.audio[1, 0].numpy(), A1[0])
    assert batch.audio[1, 1:].abs().sum() == 0 and batch.audio[2].abs().sum() == 0
    assert batch.visual[0].abs().sum() == 0
    assert batch.label.dtype.is_floating_point is False and batch.label.tolist() == [0, 1, 2]
    assert batch.soft_label.shape == (3, 3) and batch.attributes is None


def test_collate_normalises_real_frames_only() -> None:
    batch = collate(rows_of([A0, A1, None], [None, V1, None], "float16"), spec(True, "float16"))
    expected = (A0 - np.array([1.0, -1.0])) / np.array([2.0, 0.5])
    np.testing.assert_allclose(batch.audio[0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(batch.audio[1, 0].numpy(), [3.0, 18.0])
    assert batch.audio[1, 1:].abs().sum() == 0 and batch.audio[2].abs().sum() == 0
    np.testing.assert_allclose(batch.visual[1].numpy(), np.full((2, 3), 2.0))
    assert batch.visual[0].abs().sum() == 0


def test_a_batch_without_any_frames_of_a_modality_has_one_padded_frame() -> None:
    batch = collate(rows_of([A1], [None], "float32"), spec(False))
    assert batch.visual.shape == (1, 1, 3) and not batch.visual_mask.any()


def test_combined_moments_equal_numpy_over_all_frames() -> None:
    rng = np.random.default_rng(3)
    chunks = [rng.normal(2.0, 3.0, size=(n, 4)) for n in (5, 1, 17)]
    parts = [
        dict(modality="audio", frames=len(c), mean=c.mean(0), m2=((c - c.mean(0)) ** 2).sum(0))
        for c in chunks
    ]
    stats = M.combine_moments(parts, {"audio": 4, "visual": 2})
    every = np.concatenate(chunks)
    np.testing.assert_allclose(stats["audio"]["mean"], every.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["audio"]["std"], every.std(0), rtol=1e-12)
    assert stats["audio"]["frames"] == 23 and stats["visual"]["frames"] == 0


def test_open_refuses_a_folder_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(StoreError, match=r"has no manifest\.json: its ingest did not finish"):
        FeatureStore.open(str(tmp_path))


def minimal_manifest() -> dict:
    manifest = dict(
        schema_version=1,
        corpus="crema-d",
        features=dict(frame_dtype="float16", audio=dict(dim=2), visual=dict(dim=3)),
        labels=dict(kind="categorical", classes=["a", "b", "c"]),
        counts=dict(train=dict(rows=3, av=1, audio=2, visual=0)),
        normalization=dict(
            audio=dict(mean=[0.0, 1.0], std=[0.0, 2.0]), visual=dict(mean=[0.0] * 3, std=[1.0] * 3)
        ),
        shards=[],
        rejects=dict(total=0, by_reason={}),
        provenance=dict(created="now"),
    )
    manifest["manifest_id"] = M.manifest_id(manifest)
    return manifest


def test_open_checks_schema_version_and_reads_counts_and_spec(tmp_path: Path) -> None:
    manifest = minimal_manifest()
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    store = FeatureStore.open(str(tmp_path))
    assert store.splits() == ["train"] and store.count("train") == 3
    assert store.count("train", "audio") == 2 and store.class_names == ["a", "b", "c"]
    with pytest.raises(StoreError, match="condition 'both'"):
        store.count("train", "both")
    with pytest.raises(StoreError, match="no split 'dev'"):
        store.count("dev")
    spec_ = store.batch_spec()
    np.testing.assert_allclose(spec_.audio_std, [R.STD_FLOOR, 2.0])  # constant dim: floored
    assert store.batch_spec(normalize=False).audio_mean is None
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(StoreError, match="schema_version 99"):
        FeatureStore.open(str(tmp_path))


def test_manifest_id_ignores_creation_time_only() -> None:
    manifest = minimal_manifest()
    later = {**manifest, "provenance": dict(created="later")}
    assert M.manifest_id(later) == manifest["manifest_id"]
    assert M.manifest_id({**manifest, "corpus": "msp-improv"}) != manifest["manifest_id"]


def arrow_rows(rows: dict) -> pa.Table:
    """The numpy rows of `rows_of` as the pyarrow table Ray Data hands `collate` (ROW_SCHEMA)."""
    n = len(rows["id"])
    return pa.table(
        {
            "id": pa.array(list(rows["id"]), pa.string()),
            "speaker": pa.array(list(rows["speaker"]), pa.string()),
            "gender": pa.array([None] * n, pa.string()),
            "split": pa.array(["train"] * n, pa.string()),
            "label": pa.array(rows["label"], pa.int32()),
            "soft_label": pa.array([list(r) for r in rows["soft_label"]], pa.list_(pa.float32())),
            "attributes": pa.array([None] * n, pa.list_(pa.float32())),
            "audio": pa.array(list(rows["audio"]), pa.binary()),
            "audio_frames": pa.array(rows["audio_frames"], pa.int32()),
            "visual": pa.array(list(rows["visual"]), pa.binary()),
            "visual_frames": pa.array(rows["visual_frames"], pa.int32()),
        },
        schema=S.ROW_SCHEMA,
    )


def assert_same_batch(got: Batch, want: Batch) -> None:
    assert got.ids == want.ids and got.speakers == want.speakers
    for name in ("audio", "audio_mask", "visual", "visual_mask", "has_audio", "has_visual"):
        np.testing.assert_array_equal(getattr(got, name).numpy(), getattr(want, name).numpy())
    np.testing.assert_array_equal(got.label.numpy(), want.label.numpy())
    np.testing.assert_array_equal(got.soft_label.numpy(), want.soft_label.numpy())
    assert got.attributes is None and want.attributes is None


def test_collate_of_a_pyarrow_table_equals_collate_of_numpy_rows() -> None:
    rows = rows_of([A0, A1, None, A1], [None, V1, V1, V1], "float16")
    want = collate(rows, spec(True, "float16"))
    assert_same_batch(collate(arrow_rows(rows), spec(True, "float16")), want)
    # Slices and several chunks: buffers read at the right offsets, nulls kept apart.
    table = arrow_rows(rows)
    chunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert chunked.column("audio").num_chunks == 3
    assert_same_batch(collate(chunked, spec(True, "float16")), want)
    tail = collate(table.slice(2), spec(True, "float16"))
    np.testing.assert_array_equal(tail.visual.numpy(), want.visual[2:].numpy())
    assert tail.ids == ["u2", "u3"] and not tail.has_audio[0]


def test_large_padded_arrays_are_zeroed_writable_float32() -> None:
    big = R._zeros((2, 300, 1024))  # above OWN_MAPPING_BYTES: an anonymous mapping
    assert big.dtype == np.float32 and big.flags.writeable and not big.any()
    big[1, 299] = 1.0
    assert big.sum() == 1024


def write_shard(path: Path, rows: dict, row_group_rows: int) -> dict:
    table = arrow_rows(rows)
    pq.write_table(table, path, row_group_size=row_group_rows)
    return dict(path=path.name, split="train", rows=table.num_rows, bytes=path.stat().st_size)


def test_shard_source_plans_one_task_per_shard_and_streams_small_blocks(tmp_path: Path) -> None:
    rows = rows_of([A0, A1, None, A1, A0], [V1, None, V1, V1, None], "float32")
    shards = [
        write_shard(tmp_path / "a.parquet", rows, row_group_rows=5),
        write_shard(tmp_path / "b.parquet", rows, row_group_rows=2),
    ]
    fs, root = storage.resolve(str(tmp_path))
    paths = [storage.join(root, s["path"]) for s in shards]
    tasks = ShardSource(fs, paths, shards, block_rows=2).get_read_tasks(parallelism=8)
    assert [t.metadata.num_rows for t in tasks] == [5, 5]
    assert sum(t.metadata.size_bytes for t in tasks) == sum(s["bytes"] for s in shards)
    for task in tasks:
        blocks = list(task.read_fn())
        assert [b.num_rows for b in blocks] == [2, 2, 1]
        assert pa.concat_tables(blocks).equals(arrow_rows(rows))


def test_a_shard_with_another_schema_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["u0"]}), tmp_path / "odd.parquet")
    fs, root = storage.resolve(str(tmp_path))
    with pytest.raises(StoreError, match=r"odd\.parquet does not have the store's row schema"):
        next(read_shard(fs, storage.join(root, "odd.parquet"), 2))


def test_speaker_mode_centres_each_row_on_its_speaker_and_unknown_speakers_on_the_global_mean():
    stats = dict(
        audio=dict(frames=9, mean=[1.0, -1.0], std=[2.0, 0.5], within_speaker_std=[4.0, 1.0]),
        visual=dict(frames=4, mean=[0.0] * 3, std=[4.0] * 3),  # no within std: global std
    )
    own = {"audio": {"s": np.array([10.0, 20.0], np.float32)}}
    fields = R.normalisation(stats, "speaker", own)
    spec_ = BatchSpec(
        audio_dim=2, visual_dim=3, frame_dtype="float32", task_kind="categorical", **fields
    )
    rows = rows_of([A0, A1], [V1, V1], "float32")
    rows["speaker"] = np.array(["s", "stranger"], dtype=object)
    batch = collate(rows, spec_)
    np.testing.assert_allclose(batch.audio[0].numpy(), (A0 - [10.0, 20.0]) / [4.0, 1.0])
    np.testing.assert_allclose(batch.audio[1, 0].numpy(), (A1[0] - [1.0, -1.0]) / [4.0, 1.0])
    assert batch.audio[1, 1:].abs().sum() == 0  # pads stay zero
    np.testing.assert_allclose(batch.visual[0].numpy(), V1 / 4.0)
    assert fields["normalize"] == "speaker"


def test_normalisation_modes_and_the_older_booleans() -> None:
    stats = dict(audio=dict(frames=1, mean=[1.0, 2.0], std=[0.0, 2.0]))
    assert R.normalisation(stats, "none") == {"normalize": "none"}
    assert R.normalisation(stats, False) == {"normalize": "none"}
    global_ = R.normalisation(stats, True)
    assert global_["normalize"] == "global" and "speaker_means" not in global_
    np.testing.assert_allclose(global_["audio_std"], [R.STD_FLOOR, 2.0])
    assert global_["visual_mean"] is None
    with pytest.raises(StoreError, match="normalize='per-row'"):
        R.normalisation(stats, "per-row")
    with pytest.raises(StoreError, match="statistics are missing"):
        R.normalisation(None, "speaker")


def test_speaker_mode_on_a_store_without_speaker_statistics_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(minimal_manifest()))
    store = FeatureStore.open(str(tmp_path))
    with pytest.raises(StoreError, match=r"no per-speaker statistics.*data\.normalize=global"):
        store.batch_spec(normalize="speaker")


def test_combined_speaker_moments_pool_the_within_speaker_spread_of_train_speakers() -> None:
    rng = np.random.default_rng(5)
    frames = {  # (speaker, split) -> chunks, each one batch's part
        ("a", "train"): [rng.normal(5.0, 1.0, (4, 2)), rng.normal(5.0, 1.0, (6, 2))],
        ("b", "train"): [rng.normal(-5.0, 2.0, (7, 2))],
        ("b", "test"): [rng.normal(-5.0, 2.0, (3, 2))],
        ("c", "test"): [rng.normal(0.0, 1.0, (2, 2))],
    }
    parts = [
        dict(
            speaker=spk,
            split=split,
            modality="audio",
            utterances=1,
            frames=len(c),
            mean=c.mean(0),
            m2=((c - c.mean(0)) ** 2).sum(0),
        )
        for (spk, split), chunks in frames.items()
        for c in chunks
    ]
    table, within = M.combine_speaker_moments(parts, {"audio": 2})
    rows = {r["speaker"]: r for r in table.to_pylist()}
    b_all = np.concatenate(frames[("b", "train")] + frames[("b", "test")])
    np.testing.assert_allclose(rows["b"]["mean"], b_all.mean(0), rtol=1e-6)
    assert (
        rows["a"]["utterances"] == 2 and rows["b"]["frames"] == 10 and set(rows) == {"a", "b", "c"}
    )
    a_train = np.concatenate(frames[("a", "train")])
    b_train = np.concatenate(frames[("b", "train")])
    centred = np.concatenate([a_train - a_train.mean(0), b_train - b_train.mean(0)])
    np.testing.assert_allclose(within["audio"], centred.std(0), rtol=1e-12)


def test_shard_source_reads_only_the_given_rows_of_each_shard(tmp_path: Path) -> None:
    rows = rows_of([A0, A1, None, A1, A0], [V1, None, V1, V1, None], "float32")
    shards = [
        write_shard(tmp_path / "a.parquet", rows, row_group_rows=5),
        write_shard(tmp_path / "b.parquet", rows, row_group_rows=2),
    ]
    fs, root = storage.resolve(str(tmp_path))
    paths = [storage.join(root, s["path"]) for s in shards]
    source = ShardSource(fs, paths, shards, block_rows=2, rows=[(1, 4), (3, 5)])
    tasks = source.get_read_tasks(parallelism=8)
    assert [t.metadata.num_rows for t in tasks] == [3, 2]
    expected = arrow_rows(rows)
    for task, (start, stop) in zip(tasks, [(1, 4), (3, 5)], strict=True):
        assert pa.concat_tables(list(task.read_fn())).equals(expected.slice(start, stop - start))
    # b.parquet has row groups of 2: rows 3..5 are read from its last two, never the first.
    blocks = list(read_shard(fs, paths[1], 8, 3, 5))
    assert pa.concat_tables(blocks).equals(expected.slice(3, 2))
    assert list(read_shard(fs, paths[1], 8, 5, 5)) == []
