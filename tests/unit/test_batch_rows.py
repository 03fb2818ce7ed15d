"""A pass's batches: every row once, the same batches for the same seed, and with length
bucketing batches of similar lengths that still come in a random order."""

from __future__ import annotations

import numpy as np
import pytest

from vavl.store.cache import batch_rows


def _rows(batches: list[np.ndarray]) -> list[int]:
    return sorted(int(i) for b in batches for i in b)


@pytest.mark.parametrize("window", [None, 1, 4, 100])
@pytest.mark.parametrize("n", [1, 31, 32, 100])
def test_every_row_once_in_ceil_n_over_b_batches_only_the_last_short(
    n: int, window: int | None
) -> None:
    lengths = np.random.default_rng(0).integers(1, 200, n)
    batches = batch_rows(n, 8, seed=3, lengths=lengths, window_batches=window)
    assert _rows(batches) == list(range(n))
    assert len(batches) == -(-n // 8)
    assert all(len(b) == 8 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 8


def test_without_seed_the_rows_come_in_order() -> None:
    batches = batch_rows(10, 4, seed=None, lengths=np.arange(10)[::-1], window_batches=2)
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_without_bucketing_the_order_is_the_seeds_permutation() -> None:
    batches = batch_rows(20, 6, seed=7)
    assert np.concatenate(batches).tolist() == np.random.default_rng(7).permutation(20).tolist()


def test_bucketing_is_reproducible_pads_less_and_varies_with_the_seed() -> None:
    n, b = 512, 16
    lengths = np.random.default_rng(1).integers(75, 200, n)

    def padded(batches: list[np.ndarray]) -> int:
        return sum(int(lengths[batch].max()) * len(batch) for batch in batches)

    plain = batch_rows(n, b, seed=5)
    bucketed = batch_rows(n, b, seed=5, lengths=lengths, window_batches=8)
    again = batch_rows(n, b, seed=5, lengths=lengths, window_batches=8)
    other = batch_rows(n, b, seed=6, lengths=lengths, window_batches=8)
    assert [x.tolist() for x in bucketed] == [x.tolist() for x in again]
    assert [x.tolist() for x in bucketed] != [x.tolist() for x in other]
    assert padded(bucketed) < 0.85 * padded(plain)  # real frames are ~0.71 of plain's padding
    # Batch order is shuffled: the batches' longest lengths are not sorted within any window.
    longest = [int(lengths[x].max()) for x in bucketed]
    assert longest != sorted(longest)
