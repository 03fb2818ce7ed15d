"""The store's manifest: normalisation statistics, shard records, the id, and the commit.

A store is complete exactly when `STORE/manifest.json` exists: shards are written under a
temporary prefix `STORE/_tmp-<uuid>/`, hashed, moved into `STORE/<split>/part-NNNNN.parquet`, and
only then is the manifest written (a rename on local disk, a single PUT on S3).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vavl import __version__, storage
from vavl.store import schema as S


def combine_moments(parts: list[dict[str, Any]], dims: dict[str, int]) -> dict[str, Any]:
    """Merge partial moments (Chan et al.'s parallel update) into per-dim mean and std."""
    stats: dict[str, Any] = {}
    for modality, dim in dims.items():
        _, n, mean, m2 = _merge([p for p in parts if p["modality"] == modality], dim)
        std = np.sqrt(m2 / n) if n else np.zeros(dim)
        stats[modality] = dict(frames=n, mean=mean.tolist(), std=std.tolist())
    return stats


def describe_file(fs: pafs.FileSystem, path: str, relative: str) -> dict[str, Any]:
    digest, size = storage.sha256(fs, path)
    return dict(path=relative, bytes=size, sha256=digest)


def describe_shard(fs: pafs.FileSystem, path: str, relative: str, split: str) -> dict[str, Any]:
    digest, size = storage.sha256(fs, path)
    with fs.open_input_file(path) as handle:
        rows = pq.ParquetFile(handle).metadata.num_rows
    return dict(path=relative, split=split, rows=rows, bytes=size, sha256=digest)


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, when it is a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    return dict(vavl=__version__, git_commit=git_commit())


def manifest_id(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the manifest without its id and creation time."""
    content = {k: v for k, v in manifest.items() if k != "manifest_id"}
    provenance = {k: v for k, v in content.get("provenance", {}).items() if k != "created"}
    content["provenance"] = provenance
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def commit_manifest(fs: pafs.FileSystem, root: str, manifest: dict[str, Any]) -> None:
    """Write STORE/manifest.json: the single step that makes a store visible as complete."""
    data = json.dumps(manifest, indent=1, sort_keys=False).encode()
    storage.write_bytes(fs, storage.join(root, S.MANIFEST_NAME), data)


def load_manifest(fs: pafs.FileSystem, root: str, uri: str) -> dict[str, Any]:
    path = storage.join(root, S.MANIFEST_NAME)
    if not storage.is_file(fs, path):
        raise S.StoreError(
            f"{storage.redact(uri)} has no {S.MANIFEST_NAME}: its ingest did not finish "
            "(or this is not a feature store)"
        )
    try:
        manifest = json.loads(storage.read_bytes(fs, path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise S.StoreError(f"{storage.redact(uri)}/{S.MANIFEST_NAME} is not JSON: {err}") from None
    version = manifest.get("schema_version")
    if version != S.SCHEMA_VERSION:
        raise S.StoreError(
            f"{storage.redact(uri)}: schema_version {version!r} is not supported "
            f"(this reader knows {S.SCHEMA_VERSION})"
        )
    return manifest


def verify_shards(fs: pafs.FileSystem, root: str, manifest: dict[str, Any], uri: str) -> None:
    """Re-hash every shard and compare with the manifest's checksum and size."""
    for shard in manifest["shards"]:
        path = storage.join(root, shard["path"])
        if not storage.is_file(fs, path):
            raise S.StoreError(f"{storage.redact(uri)}: shard {shard['path']} is missing")
        digest, size = storage.sha256(fs, path)
        if digest != shard["sha256"] or size != shard["bytes"]:
            raise S.StoreError(
                f"{storage.redact(uri)}: shard {shard['path']} checksum mismatch "
                f"(manifest {shard['sha256'][:12]}/{shard['bytes']} B, "
                f"found {digest[:12]}/{size} B)"
            )


SPEAKER_MOMENTS_SCHEMA = pa.schema(
    [
        ("speaker", pa.string()),
        ("split", pa.string()),
        ("modality", pa.string()),
        ("utterances", pa.int64()),
        ("frames", pa.int64()),
        ("mean", pa.list_(pa.float64())),
        ("m2", pa.list_(pa.float64())),
    ]
)


def speaker_moments(batch: pa.Table, *, frame_dtype: str, dims: dict[str, int]) -> pa.Table:
    """Per (speaker, split, modality) frame count, mean and sum of squared deviations (float64)
    of one batch of valid stored rows: a Ray Data `map_batches` body. The statistics are of the
    stored (possibly float16) values, the ones the reader normalises; `combine_moments` and
    `combine_speaker_moments` merge the partial results."""
    out = []
    speakers = batch.column("speaker").to_pylist()
    splits = batch.column("split").to_pylist()
    for modality, dim in dims.items():
        if not dim:
            continue
        groups: dict[tuple[str, str], list[np.ndarray]] = {}
        for speaker, split, blob in zip(
            speakers, splits, batch.column(modality).to_pylist(), strict=True
        ):
            if blob is not None:
                frames = np.frombuffer(blob, dtype=frame_dtype).reshape(-1, dim)
                groups.setdefault((speaker, split), []).append(frames)
        for (speaker, split), parts in groups.items():
            frames = np.concatenate(parts).astype(np.float64)
            mean = frames.mean(axis=0)
            out.append(
                dict(
                    speaker=speaker,
                    split=split,
                    modality=modality,
                    utterances=len(parts),
                    frames=len(frames),
                    mean=mean,
                    m2=((frames - mean) ** 2).sum(axis=0),
                )
            )
    return pa.Table.from_pylist(out, schema=SPEAKER_MOMENTS_SCHEMA)


def _merge(parts: list[dict[str, Any]], dim: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(utterances, frames, mean, m2) of the union of partial moments (Chan et al.)."""
    utterances, n = 0, 0
    mean, m2 = np.zeros(dim), np.zeros(dim)
    for part in parts:
        n_b, mean_b, m2_b = part["frames"], np.asarray(part["mean"]), np.asarray(part["m2"])
        delta = mean_b - mean
        total = n + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (n * n_b / total)
        n = total
        utterances += int(part.get("utterances", 0))
    return utterances, n, mean, m2


def combine_speaker_moments(
    parts: list[dict[str, Any]], dims: dict[str, int]
) -> tuple[pa.Table, dict[str, list[float]]]:
    """Per-speaker statistics (SPEAKER_STATS_SCHEMA, one row per speaker and modality, over all
    of that speaker's rows in every split) and, per modality, the within-speaker std pooled
    over the train split's frames: the scale of features once each speaker's mean is removed."""
    rows, within = [], {}
    for modality, dim in dims.items():
        mine = [p for p in parts if p["modality"] == modality]
        for speaker in sorted({p["speaker"] for p in mine}):
            utterances, frames, mean, _ = _merge([p for p in mine if p["speaker"] == speaker], dim)
            rows.append(
                dict(
                    speaker=speaker,
                    modality=modality,
                    utterances=utterances,
                    frames=frames,
                    mean=mean.astype(np.float32),
                )
            )
        train = [p for p in mine if p["split"] == "train"]
        n, m2 = 0, np.zeros(dim)
        for speaker in {p["speaker"] for p in train}:
            _, frames, _, speaker_m2 = _merge([p for p in train if p["speaker"] == speaker], dim)
            n, m2 = n + frames, m2 + speaker_m2
        if n:
            within[modality] = np.sqrt(m2 / n).tolist()
    return pa.Table.from_pylist(rows, schema=S.SPEAKER_STATS_SCHEMA), within
