"""A split read once through Ray Data and then served from memory gives the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.factories import synthetic_store
from vavl.batch import Batch
from vavl.store import FeatureStore
from vavl.store.cache import MIB, SplitCache, fits_in_memory

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
