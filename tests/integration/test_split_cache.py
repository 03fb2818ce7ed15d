"""A split read once through Ray Data and then served from memory gives the same rows; a
training rank reads its own range of the stored order, in an order drawn from the seed alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.factories import synthetic_store
from vavl.batch import Batch
from vavl.store import FeatureStore, iter_batches
from vavl.store.cache import MIB, SplitCache, fits_in_memory
from vavl.store.partition import rank_rows

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None) -> FeatureStore:
    root = tmp_path_factory.mktemp("cache")
    path = synthetic_store(
        root, shard_rows=7, utterances=60, seed=3, audio_dim=8, visual_dim=6, unpaired_share=0.5
    )
    return FeatureStore.open(path)


def rows_of(batches: list[Batch]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """id -> (audio frames, visual frames, soft label) without padding."""
    out = {}
    for batch in batches:
        for i, uid in enumerate(batch.ids):
            assert uid not in out, f"{uid} served twice in one pass"
            t_a, t_v = int(batch.audio_mask[i].sum()), int(batch.visual_mask[i].sum())
            out[uid] = (
                batch.audio[i, :t_a].numpy(),
                batch.visual[i, :t_v].numpy(),
                batch.soft_label[i].numpy(),
            )
    return out


def test_second_pass_serves_the_first_pass_rows_reshuffled_by_seed(store: FeatureStore) -> None:
    cache = SplitCache(store.dataset("train"), store.batch_spec(), keep=True)
    first = rows_of(list(cache.batches(batch_size=4, shuffle=True, seed=0)))
    assert cache.cached_rows == store.count("train") == len(first)

    orders = {}
    for seed in (1, 1, 2):
        batches = list(cache.batches(batch_size=4, shuffle=True, seed=seed))
        assert all(len(b.ids) <= 4 for b in batches)
        again = rows_of(batches)
        assert again.keys() == first.keys()
        for uid, (audio, visual, soft) in again.items():
            np.testing.assert_array_equal(audio, first[uid][0])
            np.testing.assert_array_equal(visual, first[uid][1])
            np.testing.assert_array_equal(soft, first[uid][2])
        orders.setdefault(seed, []).append([u for b in batches for u in b.ids])
    assert orders[1][0] == orders[1][1]
    assert orders[1][0] != orders[2][0]
    unshuffled = [u for b in cache.batches(batch_size=5) for u in b.ids]
    assert len(unshuffled) == len(first) and unshuffled != orders[1][0]


def test_a_split_that_does_not_fit_is_streamed_every_pass(store: FeatureStore) -> None:
    cache = SplitCache(store.dataset("dev"), store.batch_spec(), keep=False)
    for _ in range(2):
        assert len(rows_of(list(cache.batches(batch_size=8)))) == store.count("dev")
        assert cache.cached_rows == 0


def test_fit_is_judged_per_worker_share_of_the_manifest_bytes(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_disk = sum(p.stat().st_size for p in (Path(store.uri) / "train").glob("*.parquet"))
    assert store.split_bytes("train") == on_disk > 0

    monkeypatch.setattr(store, "split_bytes", lambda split: 3 * MIB)
    assert fits_in_memory(store, "train", parts=2, budget_mb=2)  # 1.5 MiB each
    assert not fits_in_memory(store, "train", parts=1, budget_mb=2)
    assert not fits_in_memory(store, "train", parts=2, budget_mb=0)  # 0 turns the cache off


def stored_ids(store: FeatureStore, split: str) -> list[str]:
    """The split's ids in the manifest's global row order, read without Ray."""
    return [
        uid
        for path in store.shard_paths(split)
        for uid in pq.read_table(path, columns=["id"]).column("id").to_pylist()
    ]


def ids_of(batches) -> list[str]:
    return [uid for batch in batches for uid in batch.ids]


def test_each_rank_reads_its_own_range_of_the_stored_order(store: FeatureStore) -> None:
    everything = stored_ids(store, "train")
    shares = [rank_rows(len(everything), 2, rank) for rank in (0, 1)]
    for share in shares:
        read = ids_of(
            iter_batches(store.dataset("train", rows=share), store.batch_spec(), batch_size=5)
        )
        assert read == everything[share.start : share.stop]
        mixed = store.dataset("train", rows=share, slice_seed=3)
        assert sorted(ids_of(iter_batches(mixed, store.batch_spec(), batch_size=5))) == sorted(read)
    assert len(everything) - sum(len(s) for s in shares) == len(everything) % 2


def test_an_epoch_order_depends_on_its_seed_alone_also_after_a_restart(store: FeatureStore) -> None:
    share = rank_rows(store.count("train"), 2, 1)

    def source(seed: int | None):
        return store.dataset("train", rows=share, slice_seed=seed)

    straight = SplitCache(source, store.batch_spec(), keep=True)
    epochs = [ids_of(straight.batches(batch_size=4, shuffle=True, seed=s)) for s in (11, 12)]
    resumed = SplitCache(source, store.batch_spec(), keep=True)  # memory empty, as after a resume
    assert ids_of(resumed.batches(batch_size=4, shuffle=True, seed=12)) == epochs[1]
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])

    streamed = [
        ids_of(
            SplitCache(source, store.batch_spec(), keep=False).batches(
                batch_size=4, shuffle=True, seed=12
            )
        )
        for _ in range(2)
    ]
    assert streamed[0] == streamed[1] and sorted(streamed[0]) == sorted(epochs[1])


def test_length_buckets_serve_every_row_in_batches_that_pad_less(store: FeatureStore) -> None:
    plain = SplitCache(store.dataset("train"), store.batch_spec(), keep=True)
    bucketed = SplitCache(store.dataset("train"), store.batch_spec(), keep=True, bucket_batches=4)
    first = rows_of(list(plain.batches(batch_size=4, shuffle=True, seed=0)))

    def padded_frames(cache: SplitCache, seed: int) -> int:
        batches = list(cache.batches(batch_size=4, shuffle=True, seed=seed))
        assert rows_of(batches).keys() == first.keys()  # every row, once
        return sum(b.audio_mask.shape[1] * len(b.ids) for b in batches)

    seeds = range(1, 6)
    assert sum(padded_frames(bucketed, s) for s in seeds) < sum(
        padded_frames(plain, s) for s in seeds
    )
