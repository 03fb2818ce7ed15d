"""Which rows of a split each training rank reads, and in which order, from the manifest alone.

A split's rows have one global order: its shards as the manifest lists them, each shard's rows
as stored. Rank r of W reads the contiguous range `rank_rows(N, W, r)` of that order, N // W rows
each (the last N % W < W rows of the split are not used), so every rank takes the same number of
steps and no rank depends on which read task finished first. Within its rows a rank's order per
epoch is a function of a seed alone (`vavl.store.cache.SplitCache`), so a run with the same seed
and worker count sees the same batches, and a run resumed at an epoch boundary sees in its next
epoch what the straight run saw.

A different worker count gives different ranges, hence other batches (and a larger or smaller
global batch): the rows used per epoch are the same but for the dropped tail, the order is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ShardSlice:
    """Rows [start, stop) of one shard (a manifest record)."""

    shard: dict[str, Any]
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def rank_rows(total: int, world_size: int, rank: int) -> range:
    """The global row indices rank `rank` of `world_size` reads: N // W contiguous rows."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of world size {world_size}")
    share = total // world_size
    return range(rank * share, (rank + 1) * share)


def shard_slices(shards: Sequence[dict[str, Any]], rows: range) -> list[ShardSlice]:
    """`rows` (global indices, step 1) as slices of the shards that hold them, in order."""
    slices = []
    first = 0  # global index of the current shard's first row
    for shard in shards:
        count = int(shard["rows"])
        start, stop = max(rows.start, first), min(rows.stop, first + count)
        if start < stop:
            slices.append(ShardSlice(shard, start - first, stop - first))
        first += count
    if sum(s.rows for s in slices) != len(rows):
        raise ValueError(f"rows {rows.start}..{rows.stop} exceed the {first} rows of these shards")
    return slices


def shuffled(slices: list[ShardSlice], seed: int | None) -> list[ShardSlice]:
    """The slices in an order drawn from `seed` (as given when None): a streaming pass's
    coarse shuffle, before Ray Data's local buffer mixes rows within a few batches."""
    if seed is None:
        return list(slices)
    return [slices[i] for i in np.random.default_rng(seed).permutation(len(slices))]
