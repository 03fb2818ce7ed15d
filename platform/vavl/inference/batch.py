"""The Ray Data prediction job: a store's splits or feature folders -> Parquet answers + rejects.

Rows stream through `map_batches(Predictor)` on a fixed pool of actors, each holding the model
(taken once from Ray's object store); the driver writes answers as they arrive, so its memory is
one batch of answers, not the whole output.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vavl import storage
from vavl.console import Progress
from vavl.inference.answers import REJECT_COLUMNS, Predictor, result_schema
from vavl.inference.loading import InferenceError, LoadedModel
from vavl.store import FeatureStore
from vavl.store import schema as S
from vavl.store.reader import READ_TASK_CPUS

REJECTS_SUFFIX = ".rejects.parquet"


@dataclass(frozen=True)
class PredictSettings:
    """Where and how the actors run. `batch_size` None: the model config's optim.batch_size."""

    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int | None = None
    precision: str = "fp32"

    def check(self) -> None:
        if self.actors < 1:
            raise InferenceError(f"actors must be >= 1, got {self.actors}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise InferenceError(
                f"gpus_per_actor={self.gpus_per_actor} must be >= 0 and "
                f"cpus_per_actor={self.cpus_per_actor} > 0"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise InferenceError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class PredictionReport:
    out: str
    rejects_path: str
    model_uri: str
    normalization: str
    by_condition: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.by_condition.values())

    @property
    def utterances_per_s(self) -> float:
        total = self.rows + sum(self.rejected.values())
        return total / self.seconds if self.seconds else 0.0

    def summary(self) -> list[list[Any]]:
        rows: list[list[Any]] = [[f"predicted ({c})", n] for c, n in self.by_condition.items()]
        rows += [[f"rejected ({r})", n] for r, n in sorted(self.rejected.items())]
        return [
            *rows,
            ["utterances/s", round(self.utterances_per_s, 1)],
            ["predictions", self.out],
            ["rejects", self.rejects_path],
            ["model", self.model_uri],
            ["normalisation", self.normalization],
        ]


def rejects_path(out: str) -> str:
    stem = out[: -len(".parquet")] if out.endswith(".parquet") else out
    return f"{stem}{REJECTS_SUFFIX}"


def predict_store(
    loaded: LoadedModel,
    store_uri: str,
    out: str,
    *,
    split: str | None = None,
    settings: PredictSettings = PredictSettings(),
    progress: Progress | None = None,
) -> PredictionReport:
    """Answer every row of `split` (all splits when None) of a feature store; see module doc.
    `progress` counts the utterances answered (none shown by default)."""
    store = FeatureStore.open(store_uri)
    loaded.check_store(store, labels=False)
    splits = [split] if split else store.splits()
    datasets = [store.dataset(s) for s in splits]
    dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    total = sum(store.count(s) for s in splits)
    spec = loaded.store_spec(store)
    return _run(loaded, dataset, spec, out, settings, [], progress, total)


def folder_rows(
    audio_dir: str,
    visual_dir: str,
    labels: str | None = None,
    *,
    modalities: Sequence[str] = ("audio", "visual"),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows to load from per-utterance feature folders (`<dir>/<id>.npy`), and label rejects.

    With a labels CSV the ids are its FileName column (its speakers are kept); without one
    they are the names of the .npy files in either folder. Other files are not utterances.
    Only the folders of `modalities` (the model's) are read: the others' paths are empty.
    """
    from vavl.store import labels as L

    folders = {"audio": storage.resolve(audio_dir), "visual": storage.resolve(visual_dir)}
    read = {m: folder for m, folder in folders.items() if m in modalities}
    speakers: dict[str, str] = {}
    rejects: list[dict[str, Any]] = []
    if labels:
        fs, path = storage.resolve(labels)
        if not storage.is_file(fs, path):
            raise InferenceError(f"labels file {storage.redact(labels)} does not exist")
        table = L.read_label_table(storage.read_bytes(fs, path), storage.redact(labels))
        if "FileName" not in table.columns:
            raise InferenceError(f"{storage.redact(labels)} has no FileName column")
        for line, rec in enumerate(table.to_dict("records"), start=2):
            uid = L.utterance_id(rec["FileName"])
            reason = S.MISSING_ID if not uid else S.DUPLICATE_ID if uid in speakers else None
            if reason:
                rejects.append(
                    dict(
                        id=uid,
                        reject_reason=reason,
                        reject_file=labels,
                        reject_detail=f"line {line}: FileName {rec['FileName']!r}",
                    )
                )
                continue
            speakers[uid] = str(rec.get("SpkrID", "")).strip()
    else:
        for fs, root in read.values():
            for path in storage.list_files(fs, root, recursive=False):
                if path.endswith(".npy"):
                    speakers.setdefault(path.rsplit("/", 1)[-1][: -len(".npy")], "")
        if not speakers:
            named = {"audio": audio_dir, "visual": visual_dir}
            where = " or ".join(named[m] for m in read)
            raise InferenceError(f"no .npy feature files in {where}")
    rows = [
        dict(
            id=uid,
            row=i,
            speaker=spk,
            gender="",
            split="predict",
            label=-1,
            soft_label=None,
            attributes=None,
            audio_path=_feature_path(read, "audio", uid),
            visual_path=_feature_path(read, "visual", uid),
        )
        for i, (uid, spk) in enumerate(sorted(speakers.items()))
    ]
    return rows, rejects


def _feature_path(read: dict[str, tuple[Any, str]], modality: str, uid: str) -> str:
    """`<folder>/<id>.npy`, or "" (nothing to load) for a modality whose folder is not read."""
    return storage.join(read[modality][1], f"{uid}.npy") if modality in read else ""


def predict_folders(
    loaded: LoadedModel,
    audio_dir: str,
    visual_dir: str,
    out: str,
    *,
    labels: str | None = None,
    settings: PredictSettings = PredictSettings(),
    progress: Progress | None = None,
) -> PredictionReport:
    """Validate per-utterance feature files as ingest does, then answer each valid utterance.

    Folders carry no per-speaker statistics: a model trained with `data.normalize: speaker`
    sees these frames centred on the training mean instead (a warning says so); ingest the
    folders into a store and predict from it to centre each speaker on its own mean."""
    if loaded.config.data.normalize == "speaker":
        warnings.warn(
            f"{loaded.uri} was trained with per-speaker normalisation; feature folders have no "
            "speaker statistics, so frames are centred on the training mean. Ingest them into "
            "a store (pipelines/ingest.py) and predict from the store for per-speaker centring",
            stacklevel=2,
        )
    import ray.data

    from vavl.store import validate as V
    from vavl.store.ingest import ROWS_PER_TASK

    rows, rejects = folder_rows(audio_dir, visual_dir, labels, modalities=loaded.model.modalities)
    check = dict(
        audio_fs=storage.resolve(audio_dir)[0],
        visual_fs=storage.resolve(visual_dir)[0],
        audio_dim=loaded.model.audio_dim,
        visual_dim=loaded.model.visual_dim,
        frame_dtype="float32",
    )
    table = pa.Table.from_pylist(rows, schema=S.LABEL_ROW_SCHEMA)
    chunks = [table.slice(i, ROWS_PER_TASK) for i in range(0, len(rows), ROWS_PER_TASK)]
    # Checking is light I/O: a sliver of a CPU, so that it never waits behind the actors.
    dataset = ray.data.from_arrow(chunks).map_batches(
        V.check_batch, batch_format="pyarrow", fn_kwargs=check, num_cpus=READ_TASK_CPUS
    )
    spec = loaded.batch_spec(frame_dtype="float32")
    return _run(loaded, dataset, spec, out, settings, rejects, progress, len(rows))


def _run(loaded, dataset, spec, out, settings, rejects, progress, total) -> PredictionReport:
    import ray
    import ray.data

    settings.check()
    started = time.perf_counter()
    device = "cuda" if settings.gpus_per_actor > 0 else "cpu"
    task = loaded.config.task
    answered = dataset.map_batches(
        Predictor,
        batch_format="pyarrow",
        batch_size=settings.batch_size or loaded.config.optim.batch_size,
        compute=ray.data.ActorPoolStrategy(size=settings.actors),
        num_cpus=settings.cpus_per_actor,
        num_gpus=settings.gpus_per_actor or None,
        fn_constructor_kwargs=dict(
            model_ref=[ray.put(loaded.model)],
            spec=spec,
            task=task.model_dump(mode="json"),
            device=device,
            precision=settings.precision,
            threads=int(settings.cpus_per_actor),
        ),
    )
    report = PredictionReport(out, rejects_path(out), loaded.uri, loaded.normalization_source)
    metadata = {
        "vavl.model_uri": loaded.uri,
        "vavl.task": json.dumps(task.model_dump(mode="json")),
        "vavl.normalization": loaded.normalization_source,
    }
    schema = result_schema(task).with_metadata(metadata)
    counts: Counter[str] = Counter()
    progress = progress if progress is not None else Progress.off()
    parts = answered.iter_batches(batch_format="pyarrow", batch_size=None)
    with _parquet_writer(out, schema) as writer:
        for part in progress.counted(parts, "answered", total, size=lambda t: t.num_rows):
            failed = part.column("reject_reason").is_valid()
            scored = part.filter(pc.invert(failed)).select(schema.names)
            writer.write_table(scored.cast(schema))
            counts.update(scored.column("condition").to_pylist())
            rejects += part.filter(failed).select(["id", *REJECT_COLUMNS]).to_pylist()
    _write_rejects(report.rejects_path, rejects, metadata)
    report.by_condition = {c: counts[c] for c in ("av", "audio", "visual") if counts[c]}
    report.rejected = dict(Counter(r["reject_reason"] for r in rejects))
    report.seconds = time.perf_counter() - started
    return report


class _parquet_writer:
    """A ParquetWriter on a local path or s3:// URI (local parent folders are created)."""

    def __init__(self, uri: str, schema: pa.Schema) -> None:
        self.fs, self.path = storage.resolve(uri)
        if storage.needs_dirs(self.fs):
            self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        self.schema = schema

    def __enter__(self) -> pq.ParquetWriter:
        self.writer = pq.ParquetWriter(self.path, self.schema, filesystem=self.fs)
        return self.writer

    def __exit__(self, *exc: object) -> None:
        self.writer.close()


REJECTS_SCHEMA = pa.schema(
    [("id", pa.string()), ("file", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
)


def _write_rejects(uri: str, rejects: list[dict[str, Any]], metadata: dict[str, str]) -> None:
    table = pa.table(
        {
            "id": [r["id"] for r in rejects],
            "file": [r.get("reject_file") or "" for r in rejects],
            "reason": [r["reject_reason"] for r in rejects],
            "detail": [r.get("reject_detail") or "" for r in rejects],
        },
        schema=REJECTS_SCHEMA.with_metadata(metadata),
    )
    with _parquet_writer(uri, table.schema) as writer:
        writer.write_table(table)
