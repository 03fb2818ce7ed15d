"""Ingest: labels CSV + per-utterance .npy features -> sharded Parquet store + manifest (Ray Data).

Setup order and why:
1. Check the arguments and the target (an existing store needs overwrite=True) before any work.
2. Read the labels CSV in the driver: missing columns fail at once; label, split and duplicate-id
   problems become rejects (they need the whole file, not one row, to judge duplicates). A
   feature folder that does not exist is an error unless the corpus is declared to lack that
   modality (`no_audio` / `no_visual`). Leftovers of earlier ingests into the target go
   (`publish.remove_leftovers`).
3. Fix each modality's feature size (given, or the one most files have, from the .npy headers
   read in Ray tasks) so every task checks against the same number.
4. Ray Data: label rows -> `map_batches(check_batch)` loads, validates and packs each utterance;
   the result is materialised once because four consumers read it (rejects, counts, shards per
   split, train statistics) and the feature files should be read only once. It is materialised
   by streaming its blocks (`_materialize_counting`), so the utterances checked can be counted
   as they arrive.
5. Shards go to `STORE/_tmp-<uuid>/<split>/`, are hashed, moved to `STORE/<split>/part-N.parquet`
   (`vavl.store.publish`), and the manifest is committed last. The staging prefix is removed
   after success and after failure.

An ingest in which more than half of the label rows are rejected for one reason (or every row is
rejected) is refused before any shard is written, naming the reason, the count and an example;
its rejects go to `STORE/_failed-ingest-rejects.parquet` for inspection (never a manifest).

Progress: one INFO line per stage on the `vavl.store.ingest` logger, and counts inside the long
stages (feature headers read, utterances loaded and checked, utterances written) through a
`vavl.console.Progress` (silent unless the caller gives one); Ray Data's own progress bars and
per-execution INFO lines are off (`vavl.runtime.quiet_ray_data`).
"""

from __future__ import annotations

import logging
import math
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
from vavl.console import Progress
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
    notes: list[str] = field(default_factory=list)  # what the ingest found, one line each
    rejects_path: str = ""

    @property
    def accepted(self) -> int:
        return sum(c["rows"] for c in self.counts.values())

    def summary_table(self) -> str:
        lines = [f"store {self.store}  manifest {self.manifest_id[:16]}", *self.notes]
        lines.append(f"{'split':<8}{'rows':>8}{'av':>8}{'audio':>8}{'visual':>8}")
        for split, c in self.counts.items():
            lines.append(f"{split:<8}{c['rows']:>8}{c['av']:>8}{c['audio']:>8}{c['visual']:>8}")
        rejected = f"rejected {sum(self.rejects.values())} of {self.rows_in} label rows"
        where = f", listed in {self.rejects_path}" if self.rejects_path else ""
        lines.append(f"{rejected}{where}")
        lines += [f"  {reason:<20}{n:>6}" for reason, n in sorted(self.rejects.items())]
        rate = self.rows_in / self.seconds if self.seconds else 0.0
        lines.append(
            f"{self.shards} shards, {self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s "
            f"({rate:.1f} utterances/s)"
        )
        return "\n".join(lines)


def _label_rows(
    labels: str, folders: dict[str, str | None], corpus: str | None
) -> tuple[L.LabelSpec, list[dict[str, Any]], list[dict[str, Any]]]:
    fs, path = storage.resolve(labels)
    source = storage.redact(labels)
    if not storage.is_file(fs, path):
        raise S.StoreError(f"labels file {source} does not exist")
    table = L.read_label_table(storage.read_bytes(fs, path), source)
    spec = L.detect_spec(list(table.columns), source, corpus)
    accepted, rejects = L.parse_rows(table, spec, source)
    roots = {m: storage.resolve(f)[1] if f else None for m, f in folders.items()}
    for row in accepted:
        for modality, root in roots.items():
            row[f"{modality}_path"] = storage.join(root, f"{row['id']}.npy") if root else None
    return spec, accepted, rejects


def _feature_folders(folders: dict[str, str | None]) -> dict[str, str | None]:
    """`folders` (modality -> folder, None for a modality the corpus lacks) once each exists."""
    for modality, folder in folders.items():
        if folder is None:
            continue
        fs, path = storage.resolve(folder)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.NotFound:
            raise S.StoreError(
                f"{modality} folder {storage.redact(folder)} does not exist; if the corpus has no "
                f"{modality} features, say so with --no-{modality} (no_{modality}=True)"
            )
        if kind != pafs.FileType.Directory:
            raise S.StoreError(
                f"{modality} folder {storage.redact(folder)} is a file, not a folder of <id>.npy"
            )
    return folders


def _label_dataset(rows: list[dict[str, Any]]) -> ray.data.Dataset:
    table = pa.Table.from_pylist(rows, schema=S.LABEL_ROW_SCHEMA)
    chunks = [table.slice(i, ROWS_PER_TASK) for i in range(0, len(rows), ROWS_PER_TASK)]
    return ray.data.read_datasource(TableSource(chunks))


def _check(
    rows: list[dict[str, Any]], spec: dict[str, Any], progress: Progress
) -> ray.data.Dataset:
    checked = _label_dataset(rows).map_batches(
        V.check_batch, batch_format="pyarrow", fn_kwargs=spec
    )
    with progress.step("loaded and checked", total=len(rows)) as tick:
        return _materialize_counting(checked, tick)


def _materialize_counting(dataset: ray.data.Dataset, tick) -> ray.data.Dataset:
    """`dataset.materialize()`, calling `tick(rows)` as each block is done: the same blocks,
    held in Ray's object store, gathered from the stream instead of at its end."""
    refs = []
    for bundle in dataset.iter_internal_ref_bundles():
        refs.extend(bundle.block_refs)
        tick(bundle.num_rows() or 0)
    return ray.data.from_arrow_refs(refs)


def _refuse_if_mostly_rejected(
    rejects: pa.Table,
    total: int,
    accepted: int,
    fs: pafs.FileSystem,
    root: str,
    config: dict[str, Any],
) -> None:
    """StoreError when more than half of the `total` label rows were rejected for one reason,
    or none was accepted: naming the reason, its count and the first such row. The rejects are
    written to STORE/_failed-ingest-rejects.parquet first; no shard or manifest is."""
    reasons = Counter(rejects["reason"].to_pylist())
    if not reasons:
        return
    reason, count = reasons.most_common(1)[0]
    if 2 * count <= total and accepted > 0:
        return
    P.write_failed_rejects(fs, root, rejects)
    example = next(r for r in rejects.to_pylist() if r["reason"] == reason)
    if 2 * count > total:
        head = f"{count} of the {total} label rows of {config['labels']} were rejected as {reason}"
    else:
        head = (
            f"every one of the {total} label rows of {config['labels']} was rejected "
            f"({dict(sorted(reasons.items()))})"
        )
    listed = storage.join(config["out"], S.FAILED_REJECTS_NAME)
    raise S.StoreError(
        f"{head}, e.g. labels line {example['row']} ({example['file']}): {example['detail']}; "
        f"no store written; every reject is listed in {listed}"
    )


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


def _speaker_moments(
    checked: ray.data.Dataset, dims: dict[str, int], frame_dtype: str
) -> list[dict[str, Any]]:
    """Frame moments per (speaker, split, modality) of every valid row, in one pass: the
    per-speaker statistics and, merged over the train split, the normalisation statistics."""
    valid = checked.map_batches(
        P.rows_of, batch_format="pyarrow", fn_kwargs=dict(split=None, rejected=False)
    )
    parts = valid.map_batches(
        M.speaker_moments,
        batch_format="pyarrow",
        fn_kwargs=dict(frame_dtype=frame_dtype, dims=dims),
    ).take_all()
    return parts


def ingest_corpus(
    labels: str,
    audio_dir: str | None,
    visual_dir: str | None,
    out: str,
    *,
    corpus: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    frame_dtype: str = "float16",
    overwrite: bool = False,
    audio_dim: int | None = None,
    visual_dim: int | None = None,
    no_audio: bool = False,
    no_visual: bool = False,
    audio_fps: float | None = None,
    visual_fps: float | None = None,
    extractors: dict[str, str] | None = None,
    extraction: dict[str, dict[str, Any]] | None = None,
    media_rejects: dict[str, tuple[str, str, str]] | None = None,
    seed: int = 0,
    command: list[str] | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Validate and pack a corpus into a feature store at `out` (local path or s3:// URI).

    A feature folder that does not exist is an error, unless `no_audio` / `no_visual` says the
    corpus has no such modality: its folder is then None and it is stored as absent (dim 0).
    `audio_dim`/`visual_dim` default to the feature size most files of the modality have.
    `audio_fps`/`visual_fps` (frames/s) go to the manifest as given (frame_rate_source "flag"),
    else `schema.NOMINAL_FRAME_RATES` ("default").
    `extraction` (from `vavl.media`: modality -> how raw media became these frames: extractor
    name, weights' sha256, layer, sample and frame rates) goes to the manifest's
    `features.<modality>.extraction`; its `frame_rate` is that modality's rate (source
    "extractor") and its `name` the extractor recorded. `media_rejects` (id -> (reason, file,
    detail)) rejects those label rows before any feature is loaded: media that gave no frames.
    `seed` shuffles the utterances before sharding, so that shards mix speakers and labels.
    More than half of the label rows rejected for one reason, or all rejected: StoreError.
    `progress` shows counts inside the long stages (none by default).
    """
    started = time.monotonic()
    config = _check_arguments(locals())
    progress = progress if progress is not None else Progress.off()
    fs, root = storage.resolve(out)
    P.check_target(fs, root, out, overwrite)
    folders = {"audio": audio_dir, "visual": visual_dir}
    spec, rows, label_rejects = _label_rows(labels, folders, corpus)
    checked_labels = len(label_rejects)
    rows, label_rejects = _reject_media(rows, label_rejects, media_rejects or {})
    by_media = len(label_rejects) - checked_labels
    _feature_folders(folders)
    removed = P.remove_leftovers(fs, root)
    if removed:
        log.info("removed what earlier ingests left in %s: %s", config["out"], ", ".join(removed))
    total = len(rows) + len(label_rejects)
    log.info(
        "%s: %d label rows, %d to load, %d rejected by the label checks%s",
        config["labels"],
        total,
        len(rows),
        checked_labels,
        f", {by_media} by the media step (vavl.media)" if by_media else "",
    )
    early = P.reject_table(label_rejects, _small_columns(None))
    _refuse_if_mostly_rejected(early, total, len(rows), fs, root, config)
    runtime.ensure_ray()
    rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
    given = dict(audio=audio_dim, visual=visual_dim)
    dims, sizes = _feature_dims(rows, folders, given, progress)
    rates = _frame_rates(audio_fps, visual_fps, extraction or {})
    extractors = {**(extractors or {}), **{m: e["name"] for m, e in (extraction or {}).items()}}
    notes = [_feature_note(m, folders[m], dims[m], sizes.get(m), rates[m]) for m in S.MODALITIES]
    log.info("features: %s", "; ".join(notes))
    tmp = storage.join(root, f"{S.TMP_PREFIX}{uuid.uuid4().hex}")
    try:
        manifest = _build(
            spec, rows, label_rejects, dims, rates, fs, root, tmp, config, extractors, progress
        )
        for modality, described in (extraction or {}).items():
            manifest["features"][modality]["extraction"] = described
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
        rows_in=total,
        notes=notes,
        rejects_path=storage.join(config["out"], S.REJECTS_NAME),
    )


def ingest_corpus_folder(corpus: str | Path, out: str, **options: Any) -> IngestReport:
    """`ingest_corpus` of a folder laid out as `vavl.synthetic.write_corpus` writes one:
    `labels.csv`, `audio/<id>.npy` and `visual/<id>.npy`; `options` as for `ingest_corpus`
    (with no_audio / no_visual, that folder is not looked for)."""
    corpus = Path(corpus)
    audio = None if options.get("no_audio") else str(corpus / "audio")
    visual = None if options.get("no_visual") else str(corpus / "visual")
    return ingest_corpus(str(corpus / "labels.csv"), audio, visual, out, **options)


def _check_arguments(args: dict[str, Any]) -> dict[str, Any]:
    if args["frame_dtype"] not in S.FRAME_DTYPES:
        raise S.StoreError(f"frame_dtype {args['frame_dtype']!r} is not one of {S.FRAME_DTYPES}")
    for name in ("shard_rows", "row_group_rows"):
        if not _positive_int(args[name]):
            raise S.StoreError(f"{name} must be a positive integer, got {args[name]!r}")
    for modality in S.MODALITIES:
        _check_modality_arguments(args, modality)
    if args["no_audio"] and args["no_visual"]:
        raise S.StoreError("no_audio and no_visual both set: a corpus needs one modality at least")
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
        "no_audio",
        "no_visual",
        "audio_fps",
        "visual_fps",
        "seed",
    )
    config = {k: args[k] for k in keep}
    for k in ("labels", "audio_dir", "visual_dir", "out"):
        config[k] = storage.redact(config[k]) if config[k] is not None else None
    return config


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_modality_arguments(args: dict[str, Any], modality: str) -> None:
    folder, absent = args[f"{modality}_dir"], args[f"no_{modality}"]
    dim, fps = args[f"{modality}_dim"], args[f"{modality}_fps"]
    if dim is not None and not _positive_int(dim):
        raise S.StoreError(f"{modality}_dim must be a positive integer, got {dim!r}")
    if fps is not None and not (
        isinstance(fps, int | float)
        and not isinstance(fps, bool)
        and math.isfinite(fps)
        and fps > 0
    ):
        raise S.StoreError(f"{modality}_fps must be a positive number of frames/s, got {fps!r}")
    if absent:
        given = {f"{modality}_dir": folder, f"{modality}_dim": dim, f"{modality}_fps": fps}
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            raise S.StoreError(
                f"no_{modality}=True (--no-{modality}) says the corpus has no {modality}, "
                f"but {', '.join(clash)} given too"
            )
    elif folder is None:
        raise S.StoreError(
            f"no {modality} folder given: pass one, or no_{modality}=True (--no-{modality}) "
            f"if the corpus has no {modality} features"
        )


def _feature_dims(
    rows: list[dict[str, Any]],
    folders: dict[str, str | None],
    given: dict[str, int | None],
    progress: Progress,
) -> tuple[dict[str, int | None], dict[str, Counter[int]]]:
    """Each modality's feature size (given, or the one most files have; None: absent) and, for
    those not given, how many files have each size (from the .npy headers, in Ray tasks)."""
    probe = {
        m: storage.resolve(folder)[0]
        for m, folder in folders.items()
        if folder is not None and given[m] is None
    }
    sizes: dict[str, Counter[int]] = {m: Counter() for m in probe}
    if probe and rows:
        found = _label_dataset(rows).map_batches(
            V.feature_sizes, batch_format="pyarrow", fn_kwargs=dict(filesystems=probe)
        )
        # Missing files give no size: the files found, of no known total.
        with progress.step("read feature headers of", unit="files") as tick:
            for part in found.iter_rows():
                sizes[part["modality"]][part["dim"]] += 1
                tick(1)
    dims = {
        m: given[m] if given[m] is not None else V.common_dim(sizes.get(m, Counter()), m)
        for m in folders
    }
    return dims, sizes


def _frame_rates(
    audio_fps: float | None, visual_fps: float | None, extraction: dict[str, dict[str, Any]]
) -> dict[str, tuple[float, str]]:
    """(frames/s, frame_rate_source) per modality: the extractor's rate, the flag's value, else
    the nominal default."""
    given = {"audio": audio_fps, "visual": visual_fps}
    rates = {}
    for m, rate in S.NOMINAL_FRAME_RATES.items():
        if m in extraction:
            if given[m] is not None:
                raise S.StoreError(f"{m}_fps given, but the {m} extractor states its own rate")
            rates[m] = (float(extraction[m]["frame_rate"]), "extractor")
        else:
            rates[m] = (float(given[m]), "flag") if given[m] is not None else (rate, "default")
    return rates


def _reject_media(
    rows: list[dict[str, Any]],
    label_rejects: list[dict[str, Any]],
    media_rejects: dict[str, tuple[str, str, str]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The label rows whose media gave no frames move to the rejects, with the media's reason."""
    kept, rejected = [], list(label_rejects)
    for row in rows:
        if row["id"] in media_rejects:
            reason, file, detail = media_rejects[row["id"]]
            rejected.append(
                dict(id=row["id"], row=row["row"], file=file, reason=reason, detail=detail)
            )
        else:
            kept.append(row)
    return kept, rejected


def _feature_note(
    modality: str,
    folder: str | None,
    dim: int | None,
    sizes: Counter[int] | None,
    rate: tuple[float, str],
) -> str:
    """What the ingest found for one modality, in one line."""
    if folder is None:
        return f"{modality}: none (the corpus has no {modality}, as told)"
    if dim is None:
        return f"{modality}: no feature file in {storage.redact(folder)}: stored as absent"
    line = f"{modality}: {dim} features/frame at {rate[0]:g} frames/s ({rate[1]})"
    if sizes is None:
        return f"{line}; size given"
    others = sorted((d, n) for d, n in sizes.items() if d != dim)
    line = f"{line}; {sizes[dim]} of {sum(sizes.values())} files have that size"
    if others:
        line += " (others: " + ", ".join(f"{d} in {n}" for d, n in others) + ")"
    return line


def _build(
    spec: L.LabelSpec,
    rows: list[dict[str, Any]],
    label_rejects: list[dict[str, Any]],
    dims: dict[str, int | None],
    rates: dict[str, tuple[float, str]],
    fs: pafs.FileSystem,
    root: str,
    tmp: str,
    config: dict[str, Any],
    extractors: dict[str, str] | None,
    progress: Progress,
) -> dict[str, Any]:
    """Run the Ray Data work, stage and publish the shards; the manifest minus provenance."""
    frame_dtype = config["frame_dtype"]
    started = time.monotonic()
    spec_of_task = _task_spec(dims, frame_dtype, config)
    checked = _check(rows, spec_of_task, progress) if rows else None
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
    _refuse_if_mostly_rejected(reject_table, total_in, accepted, fs, root, config)
    known = {k: int(v or 0) for k, v in dims.items()}
    P.touch_staging(fs, tmp)  # from here on the staging prefix is in use (see vavl.store.publish)
    with progress.step("written", total=accepted) as tick:
        for split in counts:
            P.write_split(checked, split, counts[split]["rows"], fs, tmp, config)
            tick(counts[split]["rows"])
    for split in counts:  # after the live line is gone
        log.info("wrote %s: %d rows", split, counts[split]["rows"])
    P.touch_staging(fs, tmp)
    parts = _speaker_moments(checked, known, frame_dtype)
    P.touch_staging(fs, tmp)
    stats = None
    if "train" in counts:
        stats = M.combine_moments([p for p in parts if p["split"] == "train"], known)
        stats["split"] = "train"
        frames = ", ".join(f"{m} {stats[m]['frames']}" for m in known)
        log.info("normalisation statistics over the train frames (%s)", frames)
    speakers, within = M.combine_speaker_moments(parts, known)
    for modality, std in within.items() if stats is not None else ():
        stats[modality]["within_speaker_std"] = std
    pq.write_table(speakers, storage.join(tmp, S.SPEAKERS_NAME), filesystem=fs)
    pq.write_table(reject_table, storage.join(tmp, S.REJECTS_NAME), filesystem=fs)
    shards = P.publish(fs, root, tmp, list(counts))
    speaker_file = M.describe_file(fs, storage.join(root, S.SPEAKERS_NAME), S.SPEAKERS_NAME)
    return dict(
        schema_version=S.SCHEMA_VERSION,
        corpus=spec.corpus,
        features=_feature_spec(known, frame_dtype, extractors or {}, rates),
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
    # Filesystems travel to the tasks pickled, with the driver's endpoint and credentials. A
    # modality without a folder has no paths to load (fs None). One whose headers showed no
    # valid file gets dim 0, so that a file the full check finds valid is still refused.
    def fs_of(folder: str | None) -> pafs.FileSystem | None:
        return storage.resolve(folder)[0] if folder is not None else None

    return dict(
        audio_fs=fs_of(config["audio_dir"]),
        visual_fs=fs_of(config["visual_dir"]),
        audio_dim=dims["audio"] if dims["audio"] is not None else 0,
        visual_dim=dims["visual"] if dims["visual"] is not None else 0,
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
    dims: dict[str, int],
    frame_dtype: str,
    extractors: dict[str, str],
    rates: dict[str, tuple[float, str]],
) -> dict[str, Any]:
    """The manifest's `features`: per modality its dim (0: absent), frame rate in frames/s and
    where that rate came from ("flag": given to the ingest; "default": NOMINAL_FRAME_RATES;
    "extractor": stated by the vavl.media extractor that made the frames)."""
    spec: dict[str, Any] = {"frame_dtype": frame_dtype}
    for modality, dim in dims.items():
        rate, source = rates[modality]
        spec[modality] = dict(
            dim=dim,
            frame_rate=rate,
            frame_rate_source=source,
            extractor=extractors.get(modality),
        )
    return spec
