"""Ray Data sources: a store's shards as its manifest lists them, and the ingest's label rows.

`ray.data.read_parquet` plans every execution by listing the paths and reading Parquet footers
in Ray tasks, a fixed cost of a second or more per pass over a split on a small machine. The
manifest already says which shards make a split and how many rows and bytes each holds, so each
read task here opens one shard and streams its row groups in tables of at most `BLOCK_ROWS` rows;
Ray Data packs them into blocks of at most `DataContext.target_max_block_size` (128 MB): a read
task holds at most one shard, whatever the size of the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from vavl.store import schema as S

BLOCK_ROWS = 32  # ~18 MB of paper-dim float16 frames per table


def read_shard(
    fs: pafs.FileSystem,
    path: str,
    block_rows: int,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[pa.Table]:
    """Rows [start, stop) of one shard (all by default) as tables of at most `block_rows` rows
    (ROW_SCHEMA); only the row groups that hold them are read."""
    with fs.open_input_file(path) as handle:
        shard = pq.ParquetFile(handle)
        if not shard.schema_arrow.equals(S.ROW_SCHEMA):
            raise S.StoreError(f"shard {path} does not have the store's row schema")
        stop = shard.metadata.num_rows if stop is None else stop
        groups, first = [], None  # the row groups overlapping [start, stop), and their first row
        offset = 0
        for index in range(shard.metadata.num_row_groups):
            rows = shard.metadata.row_group(index).num_rows
            if offset < stop and offset + rows > start:
                groups.append(index)
                first = offset if first is None else first
            offset += rows
        if not groups:
            return
        position = first  # row index within the shard of the next batch's first row
        for batch in shard.iter_batches(
            batch_size=block_rows, row_groups=groups, use_threads=False
        ):
            lo, hi = max(start - position, 0), min(stop - position, batch.num_rows)
            position += batch.num_rows
            if lo < hi:
                yield pa.Table.from_batches([batch.slice(lo, hi - lo)])


class ShardSource(Datasource):
    """One read task per shard; `shards` are manifest records (path relative to `root`).
    `rows`, if given, holds one (start, stop) per shard: the task reads only those rows."""

    def __init__(
        self,
        fs: pafs.FileSystem,
        paths: list[str],
        shards: list[dict[str, Any]],
        block_rows: int = BLOCK_ROWS,
        rows: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        self._fs = fs
        self._paths = paths
        self._shards = shards
        self._block_rows = block_rows
        self._rows = rows or [(0, int(s["rows"])) for s in shards]

    def get_name(self) -> str:
        return "StoreShards"

    def estimate_inmemory_data_size(self) -> int:
        # Binary frame columns are held in Arrow as stored: about the file size.
        return sum(_share(s, rows) for s, rows in zip(self._shards, self._rows, strict=True))

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        del parallelism, data_context  # one task per shard: shards are the unit of reading
        return [
            ReadTask(
                partial(read_shard, self._fs, path, self._block_rows, start, stop),
                BlockMetadata(
                    num_rows=stop - start,
                    size_bytes=_share(shard, (start, stop)),
                    input_files=[path],
                    exec_stats=None,
                ),
                schema=S.ROW_SCHEMA,
                per_task_row_limit=per_task_row_limit,
            )
            for path, shard, (start, stop) in zip(
                self._paths, self._shards, self._rows, strict=True
            )
        ]


def _share(shard: dict[str, Any], rows: tuple[int, int]) -> int:
    """Bytes of `shard` in proportion to the rows read (the whole file for all its rows)."""
    total = int(shard["rows"])
    return (
        int(shard["bytes"])
        if rows == (0, total)
        else int(shard["bytes"]) * (rows[1] - rows[0]) // max(total, 1)
    )


class TableSource(Datasource):
    """Tables held by the driver, one read task each, their metadata computed here.

    The ingest's label rows start as such tables. `ray.data.from_arrow` would compute their
    metadata in Ray tasks; the cluster's resource view then lags behind those finished tasks and
    the next execution warns, wrongly, that no CPU is free.
    """

    def __init__(self, tables: list[pa.Table]) -> None:
        super().__init__()
        self._tables = tables

    def get_name(self) -> str:
        return "Tables"

    def estimate_inmemory_data_size(self) -> int:
        return sum(t.nbytes for t in self._tables)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        del parallelism, data_context  # the tables are the blocks, as given
        return [
            ReadTask(
                partial(_as_blocks, table),
                BlockMetadata(
                    num_rows=table.num_rows,
                    size_bytes=table.nbytes,
                    input_files=None,
                    exec_stats=None,
                ),
                schema=table.schema,
                per_task_row_limit=per_task_row_limit,
            )
            for table in self._tables
        ]


def _as_blocks(table: pa.Table) -> list[pa.Table]:
    return [table]
