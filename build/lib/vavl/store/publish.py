"""Writing a store's files: the target check, staged shards, the move into place.

Shards go to `STORE/_tmp-<uuid>/<split>/` first, are hashed, and are moved to
`STORE/<split>/part-NNNNN.parquet` only once every split is written; the manifest (written by
the caller, `manifest.commit_manifest`) comes last. A previous store at the target loses its
manifest before any of its shards, so it never looks complete with a mix of old and new files.

Leftovers of earlier ingests into the same folder: a `_tmp-*` staging prefix of an ingest that was
interrupted, and `_failed-ingest-rejects.parquet` of one refused because most rows were rejected.
The next ingest into the folder removes them (`remove_leftovers`) and does not count them as
content of the folder (`check_target`). Which staging prefix is stale is judged by its age, not a
lock: a running ingest rewrites `STAGING_HEARTBEAT` in its prefix after every stage (and its
shard writes touch the prefix too), so a prefix holding nothing newer than
`STALE_STAGING_SECONDS` belongs to no running ingest. A lock file would need the same timeout to
tell a crashed holder from a live one, and S3 offers no atomic create-if-absent to make it safe.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray.data

from vavl import storage
from vavl.store import manifest as M
from vavl.store import schema as S

STALE_STAGING_SECONDS = 3600.0


def check_target(fs: pafs.FileSystem, root: str, uri: str, overwrite: bool) -> None:
    """Refuse to write into an existing store, or a non-empty folder, unless overwrite=True.

    Leftovers of earlier ingests (`is_leftover`) do not count; a staging prefix still in use
    does (another ingest may be writing there), and overwrite=True leaves it alone.
    """
    if storage.is_file(fs, root):
        raise S.StoreError(f"{storage.redact(uri)} is a file, not a store folder")
    entries = [e for e in storage.list_dir(fs, root) if not is_leftover(fs, e)]
    if not entries or overwrite:
        return
    if all(_is_staging(e) for e in entries):
        name, age = _name(entries[0]), staging_age(fs, entries[0].path)
        raise S.StoreError(
            f"{storage.redact(uri)}: another ingest may be writing there (staging prefix "
            f"{name} last written {age:.0f} s ago; stale after {STALE_STAGING_SECONDS:.0f} s); "
            "wait for it, or pass overwrite=True (--overwrite) if that ingest is dead"
        )
    what = (
        "a feature store"
        if storage.is_file(fs, storage.join(root, S.MANIFEST_NAME))
        else ("files but no manifest.json (an unfinished ingest or another folder)")
    )
    raise S.StoreError(
        f"{storage.redact(uri)} already holds {what}; "
        "pass overwrite=True (--overwrite) to replace it"
    )


def _name(entry: pafs.FileInfo) -> str:
    return entry.path.rstrip("/").rsplit("/", 1)[-1]


def _is_staging(entry: pafs.FileInfo) -> bool:
    return entry.type == pafs.FileType.Directory and _name(entry).startswith(S.TMP_PREFIX)


def staging_age(fs: pafs.FileSystem, prefix: str, now: float | None = None) -> float:
    """Seconds since anything under a staging prefix was last written (inf: never known)."""
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    times = [i.mtime.timestamp() for i in infos if i.mtime is not None]
    own = fs.get_file_info(prefix).mtime
    if own is not None:
        times.append(own.timestamp())
    return (now if now is not None else time.time()) - max(times) if times else float("inf")


def is_leftover(fs: pafs.FileSystem, entry: pafs.FileInfo) -> bool:
    """A stale staging prefix or a refused ingest's rejects: nothing a running ingest needs."""
    if _is_staging(entry):
        return staging_age(fs, entry.path) > STALE_STAGING_SECONDS
    return entry.type == pafs.FileType.File and _name(entry) == S.FAILED_REJECTS_NAME


def remove_leftovers(fs: pafs.FileSystem, root: str) -> list[str]:
    """Delete the leftovers of earlier ingests under `root`; the names of those deleted."""
    removed = []
    for entry in storage.list_dir(fs, root):
        if is_leftover(fs, entry):
            storage.delete_prefix(fs, entry.path)
            removed.append(_name(entry))
    return removed


def touch_staging(fs: pafs.FileSystem, tmp: str) -> None:
    """Mark the staging prefix `tmp` as in use now (see the module docstring)."""
    storage.write_bytes(fs, storage.join(tmp, S.STAGING_HEARTBEAT), f"{time.time()}\n".encode())


def write_failed_rejects(fs: pafs.FileSystem, root: str, table: pa.Table) -> str:
    """The rejects of a refused ingest, beside (not in) a store: the path written."""
    path = storage.join(root, S.FAILED_REJECTS_NAME)
    if storage.needs_dirs(fs):
        fs.create_dir(root, recursive=True)
    pq.write_table(table, path, filesystem=fs)
    return path


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
        paths = storage.list_files(fs, storage.join(tmp, split))
        if not paths:
            raise S.StoreError(
                f"the staged shards of {split} under {storage.redact(tmp)} are gone (removed as "
                "stale by another ingest into this folder?); nothing was published"
            )
        for k, path in enumerate(paths):
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
    storage.delete_file(fs, storage.join(root, S.FAILED_REJECTS_NAME))
    for entry in storage.list_dir(fs, root):
        if _is_staging(entry):
            continue  # this ingest's staging area; stale ones went at its start
        if entry.type == pafs.FileType.Directory:
            for path in storage.list_files(fs, entry.path, recursive=False):
                if path.rsplit("/", 1)[-1].startswith("part-") and path.endswith(".parquet"):
                    fs.delete_file(path)
