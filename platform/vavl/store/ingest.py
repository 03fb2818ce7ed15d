"""Ingest: labels CSV + per-utterance .npy features -> sharded Parquet store + manifest (Ray Data).

Setup order and why:
1. Check the arguments and the target (an existing store needs overwrite=True) before any work.
2. Read the labels CSV in the driver: missing columns fail at once; label, split and duplicate-id
   problems become rejects (they need the whole file, not one row, to judge duplicates).
3. Fix each modality's feature size (given, or from the first valid file) so every task checks
   against the same number.
4. Ray Data: label rows -> `map_batches(check_batch)` loads, validates and packs each utterance;
   the result is materialised once because four consumers read it (rejects, counts, shards per
   split, train statistics) and the feature files should be read only once.
5. Shards go to `STORE/_tmp-<uuid>/<split>/`, are hashed, moved to `STORE/<split>/part-N.parquet`
   (`vavl.store.publish`), and the manifest is committed last.

Progress: one INFO line per stage on the `vavl.store.ingest` logger; Ray Data's own progress
bars and per-execution INFO lines are off (`vavl.runtime.quiet_ray_data`).
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray.data

from vavl import runtime, storage
from vavl.store import labels as L
from vavl.store import manifest as M
from vavl.store import publish as P
from vavl.store import schema as S
from vavl.store import validate as V
from vavl.store.source import TableSource

DEFAULT_SHARD_ROWS = 512
DEFAULT_ROW_GROUP_ROWS = 32  # ~18 MB of paper-dim float16 frames: small enough to stream
ROWS_PER_TASK = 16

log = logging.getLogger(__name__)  # one line per stage, at INFO: the ingest's progress


@dataclass
class IngestReport:
    store: str
    manifest_id: str
    counts: dict[str, dict[str, int]]
    rejects: dict[str, int]
    shards: int
    bytes: int
    seconds: float
    rows_in: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(c["rows"] for c in self.counts.values())

    def summary_table(self) -> str:
        lines = [f"store {self.store}  manifest {self.manifest_id[:16]}"]
        lines.append(f"{'split':<8}{'rows':>8}{'av':>8}{'audio':>8}{'visual':>8}")
        for split, c in self.counts.items():
            lines.append(f"{split:<8}{c['rows']:>8}{c['av']:>8}{c['audio']:>8}{c['visual']:>8}")
        lines.append(f"rejected {sum(self.rejects.values())} of {self.rows_in} label rows")
        lines += [f"  {reason:<20}{n:>6}" for reason, n in sorted(self.rejects.items())]
        rate = self.rows_in / self.seconds if self.seconds else 0.0
        lines.append(
            f"{self.shards} shards, {self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s "
            f"({rate:.1f} utterances/s)"
        )
        return "\n".join(lines)


def _label_rows(
    labels: str, audio_dir: str, visual_dir: str, corpus: str | None
) -> tuple[L.LabelSpec, list[dict[str, Any]], list[dict[str, Any]]]:
    fs, path = storage.resolve(labels)
    source = storage.redact(labels)
    if not storage.is_file(fs, path):
        raise S.StoreError(f"labels file {source} does not exist")
    table = L.read_label_table(storage.read_bytes(fs, path), source)
    spec = L.detect_spec(list(table.columns), source, corpus)
    accepted, rejects = L.parse_rows(table, spec, source)
    _, audio_root = storage.resolve(audio_dir)
    _, visual_root = storage.resolve(visual_dir)
    for row in accepted:
        row["audio_path"] = storage.join(audio_root, f"{row['id']}.npy")
        row["visual_path"] = storage.join(visual_root, f"{row['id']}.npy")
    return spec, accepted, rejects


def _check(rows: list[dict[str, Any]], spec: dict[str, Any]) -> ray.data.Dataset:
    table = pa.Table.from_pylist(rows, schema=S.LABEL_ROW_SCHEMA)
    chunks = [table.slice(i, ROWS_PER_TASK) for i in range(0, len(rows), ROWS_PER_TASK)]
    ds = ray.data.read_datasource(TableSource(chunks))
    checked = ds.map_batches(V.check_batch, batch_format="pyarrow", fn_kwargs=spec)
    return checked.materialize()


def _counts(small: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    valid = small[small["reject_reason"].isna()]
    for split in [s for s in S.SPLITS if s in set(valid["split"])]:
        part = valid[valid["split"] == split]
        has_a, has_v = part["audio_frames"] > 0, part["visual_frames"] > 0
        counts[split] = dict(
            rows=len(part),
            av=int((has_a & has_v).sum()),
            audio=int((has_a & ~has_v).sum()),
            visual=int((~has_a & has_v).sum()),
        )
    return counts


def _train_stats(
    checked: ray.data.Dataset, dims: dict[str, int], frame_dtype: str
) -> dict[str, Any]:
    train = checked.map_batches(
        P.rows_of, batch_format="pyarrow", fn_kwargs=dict(split="train", rejected=False)
    )
    parts = train.map_batches(
        M.frame_moments, batch_format="pyarrow", fn_kwargs=dict(frame_dtype=frame_dtype, dims=dims)
    ).take_all()
    stats = M.combine_moments(parts, dims)
    stats["split"] = "train"
    return stats


def _speaker_stats(
    checked: ray.data.Dataset, dims: dict[str, int], frame_dtype: str
) -> tuple[pa.Table, dict[str, list[float]]]:
    """Every speaker's frame means (all splits) and the train split's within-speaker std."""
    valid = checked.map_batches(
        P.rows_of, batch_format="pyarrow", fn_kwargs=dict(split=None, rejected=False)
    )
    parts = valid.map_batches(
        M.speaker_moments,
        batch_format="pyarrow",
        fn_kwargs=dict(frame_dtype=frame_dtype, dims=dims),
    ).take_all()
    return M.combine_speaker_moments(parts, dims)


def ingest_corpus(
    labels: str,
    audio_dir: str,
    visual_dir: str,
    out: str,
    *,
    corpus: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    frame_dtype: str = "float16",
    overwrite: bool = False,
    audio_dim: int | None = None,
    visual_dim: int | None = None,
    extractors: dict[str, str] | None = None,
    seed: int = 0,
    command: list[str] | None = None,
) -> IngestReport:
    """Validate and pack a corpus into a feature store at `out` (local path or s3:// URI).

    `audio_dim`/`visual_dim` default to the size of the first valid file of each modality.
    `seed` shuffles the utterances before sharding, so that shards mix speakers and labels.
    """
    started = time.monotonic()
    config = _check_arguments(locals())
    fs, root = storage.resolve(out)
    P.check_target(fs, root, out, overwrite)
    spec, rows, label_rejects = _label_rows(labels, audio_dir, visual_dir, corpus)
    log.info(
        "%s: %d label rows, %d to load, %d rejected by the label checks",
        config["labels"],
        len(rows) + len(label_rejects),
        len(rows),
        len(label_rejects),
    )
    runtime.ensure_ray()
    rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    dims = _feature_dims(rows, audio_dir, visual_dir, audio_dim, visual_dim, frame_dtype)
    tmp = storage.join(root, f"{S.TMP_PREFIX}{uuid.uuid4().hex}")
    try:
        manifest = _build(spec, rows, label_rejects, dims, fs, root, tmp, config, extractors)
        manifest["provenance"] = dict(
            command=command if command is not None else [storage.redact(a) for a in sys.argv],
            code=M.code_version(),
            created=datetime.now(UTC).isoformat(),
            config=config,
        )
        manifest["manifest_id"] = M.manifest_id(manifest)
        M.commit_manifest(fs, root, manifest)
    finally:
        storage.delete_prefix(fs, tmp)
    return IngestReport(
        store=storage.redact(out),
        manifest_id=manifest["manifest_id"],
        counts=manifest["counts"],
        rejects=manifest["rejects"]["by_reason"],
        shards=len(manifest["shards"]),
        bytes=sum(s["bytes"] for s in manifest["shards"]),
        seconds=time.monotonic() - started,
        rows_in=len(rows) + len(label_rejects),
    )


def ingest_corpus_folder(corpus: str | Path, out: str, **options: Any) -> IngestReport:
    """`ingest_corpus` of a folder laid out as `vavl.synthetic.write_corpus` writes one:
    `labels.csv`, `audio/<id>.npy` and `visual/<id>.npy`; `options` as for `ingest_corpus`."""
    corpus = Path(corpus)
    return ingest_corpus(
        str(corpus / "labels.csv"), str(corpus / "audio"), str(corpus / "visual"), out, **options
    )


def _check_arguments(args: dict[str, Any]) -> dict[str, Any]:
    if args["frame_dtype"] not in S.FRAME_DTYPES:
        raise S.StoreError(f"frame_dtype {args['frame_dtype']!r} is not one of {S.FRAME_DTYPES}")
    for name in ("shard_rows", "row_group_rows"):
        if not isinstance(args[name], int) or args[name] < 1:
            raise S.StoreError(f"{name} must be a positive integer, got {args[name]!r}")
    keep = (
        "labels",
        "audio_dir",
        "visual_dir",
        "out",
        "corpus",
        "shard_rows",
        "row_group_rows",
        "frame_dtype",
        "overwrite",
        "audio_dim",
        "visual_dim",
        "seed",
    )
    config = {k: args[k] for k in keep}
    for k in ("labels", "audio_dir", "visual_dir", "out"):
        config[k] = storage.redact(config[k])
    return config


def _feature_dims(
    rows: list[dict[str, Any]],
    audio_dir: str,
    visual_dir: str,
    audio_dim: int | None,
    visual_dim: int | None,
    frame_dtype: str,
) -> dict[str, int | None]:
    # Probe in label-file order (the `row` field), not the shuffled order.
    ordered = sorted(rows, key=lambda r: r["row"])
    dims: dict[str, int | None] = {}
    for modality, folder, given in (
        ("audio", audio_dir, audio_dim),
        ("visual", visual_dir, visual_dim),
    ):
        fs, _ = storage.resolve(folder)
        paths = [r[f"{modality}_path"] for r in ordered]
        dims[modality] = given if given is not None else V.probe_dim(fs, paths, frame_dtype)
    return dims


def _build(
    spec: L.LabelSpec,
    rows: list[dict[str, Any]],
    label_rejects: list[dict[str, Any]],
    dims: dict[str, int | None],
    fs: pafs.FileSystem,
    root: str,
    tmp: str,
    config: dict[str, Any],
    extractors: dict[str, str] | None,
) -> dict[str, Any]:
    """Run the Ray Data work, stage and publish the shards; the manifest minus provenance."""
    frame_dtype = config["frame_dtype"]
    started = time.monotonic()
    checked = _check(rows, _task_spec(dims, frame_dtype, config)) if rows else None
    small = _small_columns(checked)
    reject_table = P.reject_table(label_rejects, small)
    counts = _counts(small)
    accepted = sum(c["rows"] for c in counts.values())
    log.info(
        "loaded and checked %d utterances in %.1f s: %d accepted, %d rejected",
        len(rows),
        time.monotonic() - started,
        accepted,
        len(rows) - accepted,
    )
    total_in = len(rows) + len(label_rejects)
    if not counts:
        by_reason = Counter(reject_table["reason"].to_pylist())
        raise S.StoreError(
            f"every one of the {total_in} utterances of {config['labels']} was rejected "
            f"({dict(by_reason)}); no store written"
        )
    known = {k: int(v or 0) for k, v in dims.items()}
    for split in counts:
        P.write_split(checked, split, counts[split]["rows"], fs, tmp, config)
        log.info("wrote %s: %d rows", split, counts[split]["rows"])
    stats = _train_stats(checked, known, frame_dtype) if "train" in counts else None
    if stats is not None:
        frames = ", ".join(f"{m} {stats[m]['frames']}" for m in known)
        log.info("normalisation statistics over the train frames (%s)", frames)
    speakers, within = _speaker_stats(checked, known, frame_dtype)
    for modality, std in within.items() if stats is not None else ():
        stats[modality]["within_speaker_std"] = std
    pq.write_table(speakers, storage.join(tmp, S.SPEAKERS_NAME), filesystem=fs)
    pq.write_table(reject_table, storage.join(tmp, S.REJECTS_NAME), filesystem=fs)
    shards = P.publish(fs, root, tmp, list(counts))
    speaker_file = M.describe_file(fs, storage.join(root, S.SPEAKERS_NAME), S.SPEAKERS_NAME)
    return dict(
        schema_version=S.SCHEMA_VERSION,
        corpus=spec.corpus,
        features=_feature_spec(known, frame_dtype, extractors or {}),
        labels=spec.to_manifest(),
        counts=counts,
        normalization=stats,
        speakers=dict(**speaker_file, count=len(set(speakers.column("speaker").to_pylist()))),
        shards=shards,
        rejects=dict(
            path=S.REJECTS_NAME,
            total=reject_table.num_rows,
            by_reason=dict(sorted(Counter(reject_table["reason"].to_pylist()).items())),
        ),
    )


def _task_spec(dims: dict[str, int | None], frame_dtype: str, config: dict[str, Any]) -> dict:
    # Filesystems travel to the tasks pickled, with the driver's endpoint and credentials.
    return dict(
        audio_fs=storage.resolve(config["audio_dir"])[0],
        visual_fs=storage.resolve(config["visual_dir"])[0],
        audio_dim=dims["audio"],
        visual_dim=dims["visual"],
        frame_dtype=frame_dtype,
    )


def _small_columns(checked: ray.data.Dataset | None) -> pd.DataFrame:
    columns = [
        "id",
        "split",
        "audio_frames",
        "visual_frames",
        "reject_reason",
        "reject_detail",
        "reject_file",
        "csv_row",
    ]
    if checked is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return checked.select_columns(columns).to_pandas()


def _feature_spec(
    dims: dict[str, int], frame_dtype: str, extractors: dict[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {"frame_dtype": frame_dtype}
    for modality, dim in dims.items():
        spec[modality] = dict(
            dim=dim,
            frame_rate=S.NOMINAL_FRAME_RATES[modality],
            frame_rate_source="nominal",
            extractor=extractors.get(modality),
        )
    return spec
