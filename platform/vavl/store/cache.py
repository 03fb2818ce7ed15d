"""A split served from memory after its first pass through Ray Data.

Ray Data starts a streaming read for every epoch; on small epochs that start-up, not the reader's
rate, is most of the time a training step waits for data (bench/train.py). A `SplitCache` reads
its source once, keeps the rows it saw as an Arrow table owned by this process, and from the
second pass on serves padded batches from it: a full shuffle of those rows per pass (a
permutation, not Ray Data's bounded local buffer), collated one batch ahead in a thread.

A training rank's rows are its share of the manifest's row order (`vavl.store.partition`):
the same rows every epoch and after a resume, reshuffled within the rank per epoch, as a
`DistributedSampler` without reshuffling across ranks does. Every rank makes the same
keep-or-stream choice, taken from the manifest before training starts (`fits_in_memory`), so
that all ranks take the same steps whatever a rank happens to read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import ray.data

from vavl.batch import Batch
from vavl.store.reader import BatchSpec, FeatureStore, collate, iter_batches

PREFETCH_BATCHES = 2
MIB = 1024 * 1024


def fits_in_memory(store: FeatureStore, split: str, *, parts: int, budget_mb: int) -> bool:
    """Whether one of `parts` equal shares of `split` fits in `budget_mb` (from the manifest's
    shard sizes; frames are stored uncompressed blobs, so these are close to the memory used)."""
    return budget_mb > 0 and store.split_bytes(split) / parts <= budget_mb * MIB


Source = ray.data.Dataset | ray.data.DataIterator
# A pass's source: the same one every pass, or one made for the pass from its shuffle seed
# (a training rank's rows with their shards in an order drawn from it; `FeatureStore.dataset`).
SourceOrFactory = Source | Callable[[int | None], Source]


class SplitCache:
    """Batches of one split or shard: through Ray Data on the first pass, then from memory.

    A kept split's shuffled passes are permutations drawn from the pass's seed alone, the first
    one too (it reads every row before the first batch): a run resumed at a pass sees the
    batches the straight run saw, although its memory starts empty. A streamed split's order is
    reproducible when its source delivers rows in a fixed order (`preserve_order`)."""

    def __init__(
        self,
        source: SourceOrFactory,
        spec: BatchSpec,
        *,
        keep: bool,
        bucket_batches: int | None = None,
    ) -> None:
        self._source = source
        self._spec = spec
        self._keep = keep
        self._bucket_batches = bucket_batches  # see `batch_rows`
        self._table: pa.Table | None = None

    @property
    def cached_rows(self) -> int:
        return 0 if self._table is None else self._table.num_rows

    def batches(
        self, *, batch_size: int, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[Batch]:
        if self._table is None and self._keep and shuffle:
            self._table = self._read_all()
        if self._table is not None:
            yield from self._from_memory(batch_size, shuffle, seed)
            return
        seen: list[pa.Table] = []
        yield from iter_batches(
            self._source_for(seed if shuffle else None),
            self._spec,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            on_rows=seen.append if self._keep else None,
        )
        if self._keep:
            self._table = _owned(seen)  # only a complete pass is kept

    def _source_for(self, seed: int | None) -> Source:
        if isinstance(self._source, ray.data.Dataset | ray.data.DataIterator):
            return self._source
        return self._source(seed)

    def _read_all(self) -> pa.Table:
        source = self._source_for(None)
        return _owned(list(source.iter_batches(batch_format="pyarrow", batch_size=None)))

    def _from_memory(self, batch_size: int, shuffle: bool, seed: int | None) -> Iterator[Batch]:
        table = self._table
        assert table is not None
        lengths = None
        if shuffle and self._bucket_batches:
            lengths = _frame_counts(table)
        rows = batch_rows(
            table.num_rows,
            batch_size,
            seed=seed if shuffle else None,
            lengths=lengths,
            window_batches=self._bucket_batches,
        )

        def make(index: int) -> Batch:
            return collate(table.take(rows[index]), self._spec)

        yield from _ahead(make, range(len(rows)), PREFETCH_BATCHES)


def batch_rows(
    n: int,
    batch_size: int,
    *,
    seed: int | None,
    lengths: np.ndarray | None = None,
    window_batches: int | None = None,
) -> list[np.ndarray]:
    """The row indices of each batch of a pass over `n` rows: in order (seed None), or a
    permutation drawn from `seed` cut into batches. With `lengths` (n,) and `window_batches`,
    each window of `window_batches * batch_size` rows of the permutation is sorted by length
    before it is cut, and the batches are then shuffled: batches of similar lengths, so little
    padding is computed, still drawn at random. Either way ceil(n / batch_size) batches, every
    row once, only the last batch short."""
    if seed is None:
        order = np.arange(n)
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if lengths is None or not window_batches:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    window = window_batches * batch_size
    batches = []
    for start in range(0, n, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]  # at most one: the last window's tail
    return [full[i] for i in rng.permutation(len(full))] + short


def _frame_counts(table: pa.Table) -> np.ndarray | None:
    """Frames per row over both modalities (what a batch pads to), or None without the counts."""
    names = [c for c in ("audio_frames", "visual_frames") if c in table.column_names]
    if not names:
        return None
    return sum(table.column(c).to_numpy(zero_copy_only=False).astype(np.int64) for c in names)


def _owned(tables: list[pa.Table]) -> pa.Table:
    """One table of these rows in this process's memory: `take` copies them out of Ray's
    object store blocks, which a Dataset's consumer only maps."""
    return pa.concat_tables([t.take(np.arange(t.num_rows)) for t in tables])


def _ahead(make: Callable[[int], Batch], keys: range, depth: int) -> Iterator[Batch]:
    """`make(k)` for each key in order, computed up to `depth` keys ahead in one thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vavl-collate") as pool:
        pending = deque(pool.submit(make, key) for key in keys[:depth])
        for key in keys[depth:]:
            ready = pending.popleft().result()
            pending.append(pool.submit(make, key))
            yield ready
        while pending:
            yield pending.popleft().result()
