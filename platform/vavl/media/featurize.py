"""Featurize: labels CSV + raw media -> per-utterance frames -> the store's own ingest (Ray Data).

Setup order and why:
1. Check the settings, the store target and the extractors' local files before any work: the
   driver builds each extractor once (the weights' checksums and the frame rates for the
   manifest come from it), so a wrong path or layer fails here, not in every actor.
2. Read the labels CSV (the ingest reads it again and keeps its own label rejects) and list the
   media folder once: each accepted label row gets its `<id>.wav` and/or `<id>.mp4|.flv|.avi`;
   a row with none is a `missing_media` reject.
3. Ray Data: the rows -> `map_batches(Featurizer)` on an actor pool (models loaded once per
   actor, `gpus_per_actor` GPUs each) -> `<npy>/audio/<id>.npy`, `<npy>/visual/<id>.npy`, the
   folder layout `pipelines/ingest.py` reads. `npy_dir` keeps them; by default they go to a
   local temporary folder, removed at the end (on a multi-node cluster give an `npy_dir` every
   node can reach, e.g. s3://...).
4. `vavl.store.ingest_corpus` on that folder, with the media rejects and each extractor's
   description: the same validation, rejects and manifest as any ingest (one code path).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray.data

from vavl import runtime, storage
from vavl.console import Progress
from vavl.media.actor import PLAN_SCHEMA, Featurizer, FeaturizeSpec, build_audio, build_visual
from vavl.store import labels as L
from vavl.store import publish as P
from vavl.store import schema as S
from vavl.store.ingest import IngestReport, ingest_corpus
from vavl.store.source import TableSource

AUDIO_EXTENSIONS = (".wav",)
VIDEO_EXTENSIONS = (".mp4", ".flv", ".avi")

log = logging.getLogger(__name__)


@dataclass
class FeaturizeReport:
    ingest: IngestReport
    utterances: int  # label rows with media, sent to the actors
    seconds: float  # featurizing, actors' start included (the ingest's own time is in `ingest`)
    media_rejects: dict[str, int] = field(default_factory=dict)
    extraction: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary_table(self) -> str:
        rate = self.utterances / self.seconds if self.seconds else 0.0
        lines = [
            f"featurized {self.utterances} utterances in {self.seconds:.1f} s ({rate:.2f}/s)",
            *(f"  {m}: {_describe(e)}" for m, e in self.extraction.items()),
        ]
        if self.media_rejects:
            lines.append(
                "media rejects: " + ", ".join(f"{r} {n}" for r, n in self.media_rejects.items())
            )
        return "\n".join([*lines, self.ingest.summary_table()])


def _describe(extraction: dict[str, Any]) -> str:
    checksum = extraction.get("weights_sha256")
    weights = f", weights sha256 {checksum[:12]}" if checksum else ""
    layer = f", layer {extraction['layer']}" if "layer" in extraction else ""
    return (
        f"{extraction['name']} ({extraction['dim']}-d at {extraction['frame_rate']:g} frames/s"
        f"{layer}{weights})"
    )


def find_media(
    media: str, ids: list[str], spec: FeaturizeSpec
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str, str]]]:
    """(PLAN_SCHEMA rows, id -> missing_media (reason, file, detail)) from one listing of the
    media folder: audio from `<id>.wav`, else the video's track; video from the first of
    `<id>.mp4`, `.flv`, `.avi`."""
    fs, root = storage.resolve(media)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise S.StoreError(f"media folder {storage.redact(media)} does not exist")
    files: dict[str, dict[str, str]] = {}
    for path in storage.list_files(fs, root, recursive=False):
        name = path.rsplit("/", 1)[-1]
        stem, dot, ext = name.rpartition(".")
        if dot:
            files.setdefault(stem, {})[f".{ext.lower()}"] = path
    plan, missing = [], {}
    for uid in ids:
        found = files.get(uid, {})
        audio = next((found[e] for e in AUDIO_EXTENSIONS if e in found), None)
        video = next((found[e] for e in VIDEO_EXTENSIONS if e in found), None)
        wanted_audio = audio or video if spec.audio_extractor else None
        wanted_video = video if spec.visual_extractor else None
        if wanted_audio is None and wanted_video is None:
            looked = ", ".join((*AUDIO_EXTENSIONS, *VIDEO_EXTENSIONS))
            file = storage.redact(storage.join(media, uid))
            missing[uid] = (S.MISSING_MEDIA, file, f"no media file ({looked}) for this label row")
            continue
        plan.append(dict(id=uid, audio_path=wanted_audio, video_path=wanted_video))
    return plan, missing


def _label_ids(labels: str, corpus: str | None) -> list[str]:
    fs, path = storage.resolve(labels)
    if not storage.is_file(fs, path):
        raise S.StoreError(f"labels file {storage.redact(labels)} does not exist")
    table = L.read_label_table(storage.read_bytes(fs, path), storage.redact(labels))
    spec = L.detect_spec(list(table.columns), storage.redact(labels), corpus)
    accepted, _ = L.parse_rows(table, spec, storage.redact(labels))  # the ingest reports rejects
    return [row["id"] for row in accepted]


def describe_extractors(spec: FeaturizeSpec) -> dict[str, dict[str, Any]]:
    """Per modality the manifest's `extraction` record (builds each extractor once, here)."""
    described = {}
    audio = build_audio(spec)
    if audio is not None:
        described["audio"] = audio.provenance()
    visual = build_visual(spec)
    if visual is not None:
        extractor, detector = visual
        described["visual"] = dict(
            **extractor.provenance(),
            frame_rate=spec.visual_fps,
            face_detector=spec.face_detector,
            face_detector_file=detector.path.rsplit("/", 1)[-1],
            face_margin=spec.face_margin,
            no_face_frames="interpolated",
        )
    return described


def _run_actors(
    plan: list[dict[str, Any]],
    spec: FeaturizeSpec,
    media: str,
    npy_dir: str,
    *,
    actors: int,
    gpus_per_actor: float,
    cpus_per_actor: float,
    batch_size: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    table = pa.Table.from_pylist(plan, schema=PLAN_SCHEMA)
    blocks = [table.slice(i, batch_size) for i in range(0, len(plan), batch_size)]
    npy_fs, npy_root = storage.resolve(npy_dir)
    results = ray.data.read_datasource(TableSource(blocks)).map_batches(
        Featurizer,
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
        fn_constructor_kwargs=dict(
            spec=spec, media_fs=storage.resolve(media)[0], npy_fs=npy_fs, npy_root=npy_root
        ),
    )
    done = []
    with progress.step("featurized", total=len(plan)) as tick:
        for batch in results.iter_batches(batch_format="pyarrow", batch_size=None):
            done += batch.to_pylist()
            tick(batch.num_rows)
    return done


def featurize_corpus(
    labels: str,
    media: str,
    out: str,
    spec: FeaturizeSpec,
    *,
    npy_dir: str | None = None,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    cpus_per_actor: float = 1.0,
    batch_size: int = 8,
    overwrite: bool = False,
    progress: Progress | None = None,
    **ingest_options: Any,
) -> FeaturizeReport:
    """Extract frames from the media of every label row and ingest them into a store at `out`.

    `ingest_options` go to `vavl.store.ingest_corpus` (corpus, shard_rows, frame_dtype, seed,
    command...). Settings, target and extractor files are checked before any work.
    """
    progress = progress if progress is not None else Progress.off()
    if gpus_per_actor > 0 and spec.device == "cpu":
        spec = replace(spec, device="cuda")
    _check(spec, actors, gpus_per_actor, cpus_per_actor, batch_size)
    fs, root = storage.resolve(out)
    P.check_target(fs, root, out, overwrite)
    try:
        described = describe_extractors(spec)
    except (OSError, ValueError) as err:  # a model path, file or layer that cannot work
        raise S.StoreError(f"extractor setup: {err}") from None
    log.info("extractors: %s", "; ".join(f"{m} {_describe(e)}" for m, e in described.items()))
    plan, media_rejects = find_media(media, _label_ids(labels, ingest_options.get("corpus")), spec)
    log.info("%d label rows with media, %d without", len(plan), len(media_rejects))
    staging = npy_dir or tempfile.mkdtemp(prefix="vavl-featurize-")
    try:
        npy_fs, npy_root = storage.resolve(staging)
        for modality in described:
            npy_fs.create_dir(storage.join(npy_root, modality), recursive=True)
        if plan:
            runtime.ensure_ray()  # before the clock: a local cluster takes seconds to start
        started = time.monotonic()
        results = (
            _run_actors(
                plan,
                spec,
                media,
                staging,
                actors=actors,
                gpus_per_actor=gpus_per_actor,
                cpus_per_actor=cpus_per_actor,
                batch_size=batch_size,
                progress=progress,
            )
            if plan
            else []  # nothing to extract: the ingest refuses a store of rejects alone
        )
        seconds = time.monotonic() - started
        for row in results:
            if row["reason"] is not None:
                media_rejects[row["id"]] = (row["reason"], row["file"], row["detail"])
        _count_faces(described, results)
        options = dict(ingest_options, overwrite=overwrite, progress=progress)
        report = _ingest(labels, staging, out, described, media_rejects, options)
    finally:
        if npy_dir is None:
            shutil.rmtree(staging, ignore_errors=True)
    return FeaturizeReport(
        ingest=report,
        utterances=len(plan),
        seconds=seconds,
        media_rejects=dict(sorted(Counter(r[0] for r in media_rejects.values()).items())),
        extraction=described,
    )


def _ingest(
    labels: str,
    npy_dir: str,
    out: str,
    described: dict[str, dict[str, Any]],
    media_rejects: dict[str, tuple[str, str, str]],
    options: dict[str, Any],
) -> IngestReport:
    """`ingest_corpus` of the frames in `npy_dir`: each modality extracted, or absent."""
    folders = {m: storage.join(npy_dir, m) if m in described else None for m in S.MODALITIES}
    return ingest_corpus(
        labels,
        folders["audio"],
        folders["visual"],
        out,
        no_audio="audio" not in described,
        no_visual="visual" not in described,
        audio_dim=described["audio"]["dim"] if "audio" in described else None,
        visual_dim=described["visual"]["dim"] if "visual" in described else None,
        extraction=described,
        media_rejects=media_rejects,
        **options,
    )


def _count_faces(described: dict[str, dict[str, Any]], results: list[dict[str, Any]]) -> None:
    if "visual" in described:
        done = [r for r in results if r["reason"] is None and r["visual_frames"]]
        described["visual"]["frames"] = sum(r["visual_frames"] for r in done)
        described["visual"]["frames_with_face"] = sum(r["face_frames"] for r in done)


def _check(spec: FeaturizeSpec, actors: int, gpus: float, cpus: float, batch_size: int) -> None:
    try:
        spec.check()
    except ValueError as err:
        raise S.StoreError(str(err)) from None
    if actors < 1 or batch_size < 1:
        raise S.StoreError(f"actors and batch_size must be at least 1, got {actors}, {batch_size}")
    if gpus < 0 or cpus <= 0:
        raise S.StoreError(
            f"gpus_per_actor must be >= 0 and cpus_per_actor > 0, got {gpus}, {cpus}"
        )
