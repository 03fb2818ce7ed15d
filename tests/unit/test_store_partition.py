"""Each training rank's rows of a split, from the manifest's shard records alone."""

from __future__ import annotations

import pytest

from vavl.store.partition import ShardSlice, rank_rows, shard_slices, shuffled

SHARDS = [{"path": f"train/part-{i}.parquet", "rows": n} for i, n in enumerate([16, 16, 5])]


def test_ranks_get_equal_contiguous_ranges_and_the_tail_is_not_used() -> None:
    assert [rank_rows(37, 2, r) for r in (0, 1)] == [range(0, 18), range(18, 36)]
    assert [len(rank_rows(37, 3, r)) for r in range(3)] == [12, 12, 12]
    assert rank_rows(37, 1, 0) == range(37)
    assert rank_rows(1, 2, 1) == range(0)  # fewer rows than ranks: the driver refuses it
    with pytest.raises(ValueError, match="rank 2 of world size 2"):
        rank_rows(10, 2, 2)


def test_a_range_maps_onto_the_shards_that_hold_it() -> None:
    assert shard_slices(SHARDS, range(0, 18)) == [
        ShardSlice(SHARDS[0], 0, 16),
        ShardSlice(SHARDS[1], 0, 2),
    ]
    assert shard_slices(SHARDS, range(18, 36)) == [
        ShardSlice(SHARDS[1], 2, 16),
        ShardSlice(SHARDS[2], 0, 4),
    ]
    every = [s for r in range(3) for s in shard_slices(SHARDS, rank_rows(37, 3, r))]
    assert sum(s.rows for s in every) == 36
    with pytest.raises(ValueError, match="exceed the 37 rows"):
        shard_slices(SHARDS, range(30, 40))


def test_slice_order_is_drawn_from_the_seed_alone() -> None:
    slices = shard_slices(SHARDS, range(37))
    assert shuffled(slices, None) == slices
    assert shuffled(slices, 4) == shuffled(slices, 4)
    assert sorted(shuffled(slices, 4), key=slices.index) == slices
    orders = {tuple(s.shard["path"] for s in shuffled(slices, seed)) for seed in range(20)}
    assert len(orders) > 1
