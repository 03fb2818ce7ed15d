"""Writing a store's files: the target check, staged shards, the move into place.

Shards go to `STORE/_tmp-<uuid>/<split>/` first, are hashed, and are moved to
`STORE/<split>/part-NNNNN.parquet` only once every split is written; the manifest (written by
the caller, `manifest.commit_manifest`) comes last. A previous store at the target loses its
manifest before any of its shards, so it never looks complete with a mix of old and new files.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import ray.data

from vavl import storage
from vavl.store import manifest as M
from vavl.store import schema as S


def check_target(fs: pafs.FileSystem, root: str, uri: str, overwrite: bool) -> None:
    """Refuse to write into an existing store, or a non-empty folder, unless overwrite=True."""
    entries = storage.list_dir(fs, root)
    if not entries:
        if storage.is_file(fs, root):
            raise S.StoreError(f"{storage.redact(uri)} is a file, not a store folder")
        return
    if overwrite:
        return
    what = (
        "a feature store"
        if storage.is_file(fs, storage.join(root, S.MANIFEST_NAME))
        else ("files but no manifest.json (an unfinished ingest or another folder)")
    )
    raise S.StoreError(
        f"{storage.redact(uri)} already holds {what}; "
        "pass overwrite=True (--overwrite) to replace it"
    )


def rows_of(batch: pa.Table, *, split: str | None, rejected: bool) -> pa.Table:
    """Ray Data body: the valid rows of one split (ROW_SCHEMA), or the rejected rows."""
    keep = pc.is_null(batch["reject_reason"])
    if rejected:
        return batch.filter(pc.invert(keep))
    if split is not None:
        keep = pc.and_(keep, pc.equal(batch["split"], split))
    return batch.filter(keep).select(S.ROW_COLUMNS)


def write_split(
    checked: ray.data.Dataset,
    split: str,
    n_rows: int,
    fs: pafs.FileSystem,
    prefix: str,
    config: dict[str, Any],
) -> None:
    """The rows of `split` as shards of at most shard_rows rows under `prefix/split/`.

    One block per shard (repartition), so each write task writes one file. `min_rows_per_file`
    is left unset on purpose: Ray Data raises the row-group size to it, which made each shard a
    single row group and defeated `row_group_rows`.
    """
    rows = checked.map_batches(
        rows_of, batch_format="pyarrow", fn_kwargs=dict(split=split, rejected=False)
    )
    rows = rows.repartition(-(-n_rows // config["shard_rows"]))
    rows.write_parquet(
        storage.join(prefix, split),
        filesystem=fs,
        max_rows_per_file=config["shard_rows"],
        row_group_size=min(config["row_group_rows"], config["shard_rows"]),
        schema=S.ROW_SCHEMA,
        try_create_dir=storage.needs_dirs(fs),
    )


def reject_table(label_rejects: list[dict[str, Any]], small: pd.DataFrame) -> pa.Table:
    """Every rejected label row and utterance, in labels-file order (REJECTS_SCHEMA)."""
    bad = small[small["reject_reason"].notna()]
    feature_rejects = [
        dict(
            id=r.id,
            row=int(r.csv_row),
            file=r.reject_file,
            reason=r.reject_reason,
            detail=r.reject_detail,
        )
        for r in bad.itertuples(index=False)
    ]
    rows = sorted(label_rejects + feature_rejects, key=lambda r: r["row"])
    return pa.Table.from_pylist(rows, schema=S.REJECTS_SCHEMA)


def publish(fs: pafs.FileSystem, root: str, tmp: str, splits: list[str]) -> list[dict[str, Any]]:
    """Hash the shards under `tmp`, clear an old store (manifest first), move the new ones in."""
    staged = []
    for split in splits:
        for k, path in enumerate(storage.list_files(fs, storage.join(tmp, split))):
            relative = f"{split}/part-{k:05d}.parquet"
            staged.append((path, M.describe_shard(fs, path, relative, split)))
    clear_old_store(fs, root)
    for path, shard in staged:
        storage.move(fs, path, storage.join(root, shard["path"]))
    for name in (S.REJECTS_NAME, S.SPEAKERS_NAME):
        storage.move(fs, storage.join(tmp, name), storage.join(root, name))
    return [shard for _, shard in staged]


def clear_old_store(fs: pafs.FileSystem, root: str) -> None:
    """Remove a previous store's files; its manifest goes first so it never looks complete."""
    storage.delete_file(fs, storage.join(root, S.MANIFEST_NAME))
    storage.delete_file(fs, storage.join(root, S.REJECTS_NAME))
    storage.delete_file(fs, storage.join(root, S.SPEAKERS_NAME))
    for entry in storage.list_dir(fs, root):
        name = entry.path.rsplit("/", 1)[-1]
        if entry.type == pafs.FileType.Directory and name.startswith(S.TMP_PREFIX):
            continue  # a concurrent or this ingest's staging area: not ours to judge here
        if entry.type == pafs.FileType.Directory:
            for path in storage.list_files(fs, entry.path, recursive=False):
                if path.rsplit("/", 1)[-1].startswith("part-") and path.endswith(".parquet"):
                    fs.delete_file(path)
