"""Reading a feature store: open (manifest checks), Ray Data datasets, padded torch batches.

`iter_batches` works on a `ray.data.Dataset` and on the `DataIterator` that
`ray.train.get_dataset_shard(...)` returns: both have `iter_torch_batches`, whose prefetch
threads run `collate` on pyarrow batches (frame bytes are read in place from Ray's object store).

Shuffling is Ray Data's local shuffle buffer (`local_shuffle_buffer_size`,
`local_shuffle_seed=seed`): rows are mixed within a buffer of a few batches, not across the whole
split. With a seed the order is reproducible only when the blocks arrive in the same order (one
reader, `DataContext.execution_options.preserve_order = True`, which also keeps the collate
threads' batches in order); with several workers or streaming splits it is not, and without a
seed it never is. For a full-split shuffle use `dataset(split).random_shuffle(seed=...)` first.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from vavl import storage
from vavl.batch import Batch
from vavl.store import manifest as M
from vavl.store import partition as P
from vavl.store import schema as S
from vavl.store.source import ShardSource

STD_FLOOR = 1e-5
OWN_MAPPING_BYTES = 1 << 20  # padded arrays at least this large get their own mapping
SHUFFLE_BATCHES = 8  # local shuffle buffer = this many batches


READ_TASK_CPUS = 0.25
# Object store memory a split's read may fill ahead of its consumer. Without it Ray Data may read
# a whole split ahead (its default budget is half the object store), and the consuming process
# maps every block it reads: its shared memory then grows with the split (bench/store.py).
READ_AHEAD_BYTES = 256 * 1024 * 1024
BLOCK_BYTES = 32 * 1024 * 1024  # blocks of a few dozen utterances, not whole shards
# Read tasks of one split running at once: more, each with a quarter CPU, only took turns on
# this machine's 2 cores with the consumer (a 1200-utterance store read 4x slower with 7).
READ_TASKS = 2


@dataclass(frozen=True)
class BatchSpec:
    """What `collate` needs to turn stored rows into a Batch; small and picklable."""

    audio_dim: int
    visual_dim: int
    frame_dtype: str
    task_kind: str  # "categorical" | "attributes"
    num_classes: int = 0
    num_attributes: int = 0
    normalize: str = "none"  # "none" | "global" | "speaker" (see `normalisation`)
    audio_mean: np.ndarray | None = None  # (D_a,) float32
    audio_std: np.ndarray | None = None  # (D_a,) float32, already floored
    visual_mean: np.ndarray | None = None
    visual_std: np.ndarray | None = None
    # modality -> speaker -> (D,) float32: that speaker's own mean, used in place of the
    # global one for its rows ("speaker" mode; speakers missing here get the global mean).
    speaker_means: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


NORMALIZE_MODES = ("none", "global", "speaker")


def normalize_mode(value: bool | str) -> str:
    """`data.normalize` as one of NORMALIZE_MODES; the older booleans mean global or none."""
    if isinstance(value, bool):
        return "global" if value else "none"
    if value not in NORMALIZE_MODES:
        raise S.StoreError(f"normalize={value!r}; allowed: {NORMALIZE_MODES}")
    return value


def normalisation(
    stats: Mapping[str, Any] | None,
    mode: bool | str,
    speaker_means: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The BatchSpec fields that normalise frames, from a manifest's "normalization" block.

    global: (x - train mean) / train std, per dimension. speaker: (x - the utterance's speaker
    mean) / the train split's within-speaker std, which removes what is constant within a
    speaker (voice, face, channel): the speaker mean comes from that speaker's own frames in
    the store being read (features only; `FeatureStore.speaker_means`), the scale from training.
    """
    mode = normalize_mode(mode)
    fields_: dict[str, Any] = {"normalize": mode}
    if mode == "none":
        return fields_
    if not stats:
        raise S.StoreError("normalisation statistics are missing (no train split was ingested)")
    for modality in ("audio", "visual"):
        part = stats.get(modality)
        if not part:
            fields_[f"{modality}_mean"] = fields_[f"{modality}_std"] = None
            continue
        scale = part.get("within_speaker_std") if mode == "speaker" else None
        std = np.asarray(scale if scale is not None else part["std"], np.float32)
        fields_[f"{modality}_mean"] = np.asarray(part["mean"], np.float32)
        fields_[f"{modality}_std"] = np.maximum(std, STD_FLOOR)
    if mode == "speaker":
        fields_["speaker_means"] = speaker_means or {}
    return fields_


class FeatureStore:
    """A committed feature store (its manifest.json exists and has a known schema version)."""

    def __init__(self, uri: str, manifest: dict[str, Any]) -> None:
        self.uri = uri
        self.manifest = manifest
        self.manifest_id: str = manifest["manifest_id"]
        features = manifest["features"]
        self.audio_dim: int = int(features["audio"]["dim"])
        self.visual_dim: int = int(features["visual"]["dim"])
        self.frame_dtype: str = features["frame_dtype"]
        labels = manifest["labels"]
        self.task_kind: str = labels["kind"]
        self.class_names: list[str] = list(labels.get("classes", []))
        self.attribute_names: list[str] = list(labels.get("attributes", []))
        self._fs, self._root = storage.resolve(uri)

    @classmethod
    def open(cls, uri: str, *, verify_checksums: bool = False) -> FeatureStore:
        fs, root = storage.resolve(uri)
        manifest = M.load_manifest(fs, root, uri)
        if verify_checksums:
            M.verify_shards(fs, root, manifest, uri)
        return cls(uri, manifest)

    def splits(self) -> list[str]:
        return list(self.manifest["counts"])

    def _check_split(self, split: str) -> None:
        if split not in self.manifest["counts"]:
            raise S.StoreError(
                f"{storage.redact(self.uri)} has no split {split!r}; it has {self.splits()}"
            )

    def shard_paths(self, split: str) -> list[str]:
        self._check_split(split)
        return [
            storage.join(self._root, s["path"])
            for s in self.manifest["shards"]
            if s["split"] == split
        ]

    def dataset(
        self, split: str, *, rows: range | None = None, slice_seed: int | None = None
    ) -> ray.data.Dataset:
        """A Ray Data read of exactly the shards the manifest lists for `split`.

        One read task per shard (READ_TASKS at once), in blocks of at most BLOCK_BYTES; nothing is
        listed and no footer is read while planning (`vavl.store.source`). The read runs at
        most READ_AHEAD_BYTES of blocks ahead of its consumer (this Dataset's own DataContext;
        Ray Train's DataConfig sets its own limits on the datasets it is given). Read tasks ask
        for READ_TASK_CPUS, not a whole CPU: training workers usually hold all but a sliver of
        each node, and a read task that waits for a full CPU would starve them.

        `rows`: only those rows of the split's global order (a training rank's share,
        `vavl.store.partition`), delivered in that order (Ray Data's `preserve_order`), or with
        `slice_seed` shard by shard in an order drawn from it.
        """
        shards = [s for s in self.manifest["shards"] if s["split"] == split]
        self._check_split(split)
        ranges = None
        if rows is not None:
            slices = P.shuffled(P.shard_slices(shards, rows), slice_seed)
            shards = [s.shard for s in slices]
            ranges = [(s.start, s.stop) for s in slices]
        paths = [storage.join(self._root, s["path"]) for s in shards]
        if rows is not None and not paths:
            raise S.StoreError(
                f"{storage.redact(self.uri)}: rows {rows.start}..{rows.stop} of split {split!r} "
                "are empty: a rank's share needs at least one row"
            )
        ds = ray.data.read_datasource(
            ShardSource(self._fs, paths, shards, rows=ranges),
            num_cpus=READ_TASK_CPUS,
            # Without this Ray Data aims at 200 blocks and cuts each shard's blocks into
            # pieces of a few rows, which every batch then copies back together.
            override_num_blocks=len(paths),
            concurrency=min(READ_TASKS, len(paths)),  # more than the shards: Ray Data warns
        )
        ds.context.target_max_block_size = BLOCK_BYTES
        options = ds.context.execution_options
        options.resource_limits = options.resource_limits.copy(object_store_memory=READ_AHEAD_BYTES)
        if rows is not None:
            options.preserve_order = True
        return ds

    def split_bytes(self, split: str) -> int:
        """Bytes of `split`'s shards on storage, from the manifest."""
        self._check_split(split)
        return sum(int(s["bytes"]) for s in self.manifest["shards"] if s["split"] == split)

    def count(self, split: str, condition: str | None = None) -> int:
        """Rows of `split` from the manifest; `condition` (av|audio|visual) counts one of them."""
        self._check_split(split)
        counts = self.manifest["counts"][split]
        if condition is None:
            return int(counts["rows"])
        if condition not in S.MODALITY_COMBINATIONS:
            raise S.StoreError(
                f"condition {condition!r} is not one of {S.MODALITY_COMBINATIONS} (or None)"
            )
        return int(counts[condition])

    def speaker_means(self, min_utterances: int = 1) -> dict[str, dict[str, np.ndarray]]:
        """modality -> speaker -> (D,) float32 frame mean over that speaker's rows (all splits),
        for speakers with at least `min_utterances` utterances of that modality."""
        record = self.manifest.get("speakers")
        if not record:
            raise S.StoreError(
                f"{storage.redact(self.uri)} has no per-speaker statistics ({S.SPEAKERS_NAME}; "
                "stores ingested before they existed): ingest it again, or set "
                "data.normalize=global"
            )
        path = storage.join(self._root, record["path"])
        table = pq.read_table(path, filesystem=self._fs)
        means: dict[str, dict[str, np.ndarray]] = {}
        for row in table.to_pylist():
            if row["utterances"] >= min_utterances:
                mean = np.asarray(row["mean"], np.float32)
                means.setdefault(row["modality"], {})[row["speaker"]] = mean
        return means

    def batch_spec(
        self, *, normalize: bool | str = True, min_speaker_utterances: int = 1
    ) -> BatchSpec:
        """How to collate this store's rows; statistics from its own manifest (see
        `normalisation`)."""
        mode = normalize_mode(normalize)
        stats = self.manifest.get("normalization")
        if mode != "none" and not stats:
            raise S.StoreError(
                f"{storage.redact(self.uri)} has no train split, hence no normalisation "
                "statistics: use batch_spec(normalize=False)"
            )
        speakers = self.speaker_means(min_speaker_utterances) if mode == "speaker" else None
        return BatchSpec(
            audio_dim=self.audio_dim,
            visual_dim=self.visual_dim,
            frame_dtype=self.frame_dtype,
            task_kind=self.task_kind,
            num_classes=len(self.class_names),
            num_attributes=len(self.attribute_names),
            **normalisation(stats, mode, speakers),
        )


Column = np.ndarray | pa.Array | pa.ChunkedArray


def _blob_views(column: Column, dtype: str) -> list[np.ndarray | None]:
    """Each row's frame bytes as a flat `dtype` array (None for a null), without copying.

    A pyarrow binary column is read straight from its offsets and data buffers; a numpy object
    column (Ray Data's "numpy" batch format) holds one bytes object per row.
    """
    if isinstance(column, np.ndarray):
        return [None if b is None else np.frombuffer(b, dtype=dtype) for b in column]
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    views: list[np.ndarray | None] = []
    itemsize = np.dtype(dtype).itemsize
    for chunk in chunks:
        _, offsets_buf, data = chunk.buffers()
        width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        offsets = np.frombuffer(
            offsets_buf, dtype=width, count=len(chunk) + 1, offset=chunk.offset * width().itemsize
        )
        valid = chunk.is_valid().to_numpy(zero_copy_only=False) if chunk.null_count else None
        for i in range(len(chunk)):
            start, stop = int(offsets[i]), int(offsets[i + 1])
            if (valid is not None and not valid[i]) or stop == start:
                views.append(None)
            else:
                views.append(
                    np.frombuffer(data, dtype=dtype, count=(stop - start) // itemsize, offset=start)
                )
    return views


def _zeros(shape: tuple[int, int, int]) -> np.ndarray:
    """float32 zeros; a large array gets its own anonymous mapping, unmapped when freed.

    Batch arrays are 1-40 MB. From malloc, glibc's heap keeps such blocks once freed (its mmap
    threshold adapts upwards) and the reading process grows pass after pass; a mapping of its
    own goes back to the OS with its last reference, and the kernel zero-fills it lazily.
    """
    count = int(np.prod(shape))
    if count * 4 < OWN_MAPPING_BYTES:
        return np.zeros(shape, dtype=np.float32)
    return np.frombuffer(mmap.mmap(-1, count * 4), dtype=np.float32).reshape(shape)


def _pad(
    blobs: list[np.ndarray | None],
    lengths: np.ndarray,
    dim: int,
    means: list[np.ndarray] | None,
    std: np.ndarray | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T_max, D) float32 frames and (B, T_max) mask from each row's flat stored frames.

    One preallocated array is filled row by row; the cast from the stored dtype and the
    normalisation (each row's mean `means[i]` (D,), then 1 / std) happen in the same pass
    (subtract into the output, then scale in place) and touch real frames only, so pads and
    absent rows stay exactly 0.
    """
    lengths = lengths.astype(np.int64)
    width = max(int(lengths.max(initial=0)), 1)
    out = _zeros((len(lengths), width, dim))
    inv_std = None if std is None else (1.0 / std).astype(np.float32)
    for i, (blob, t) in enumerate(zip(blobs, lengths, strict=True)):
        if t == 0 or blob is None:
            continue
        frames = blob.reshape(t, dim)  # (T_i, D); raises when the row's bytes disagree with T_i
        if means is None:
            out[i, :t] = frames
        else:
            np.subtract(frames, means[i], out=out[i, :t])
            out[i, :t] *= inv_std
    mask = np.arange(width)[None, :] < lengths[:, None]
    return torch.from_numpy(out), torch.from_numpy(mask)


def _numbers(column: Column) -> np.ndarray:
    if isinstance(column, np.ndarray):
        return column
    return column.to_numpy()


def _stack(column: Column | None, width: int) -> torch.Tensor | None:
    """(B, width) float32 from a list column; None when any row lacks it."""
    if column is None or width == 0 or len(column) == 0:
        return None
    if not isinstance(column, np.ndarray):
        if column.null_count:
            return None
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        return torch.from_numpy(values.astype(np.float32).reshape(len(column), width))
    if column.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(column, dtype=np.float32).reshape(-1, width))
    if any(v is None for v in column):
        return None
    return torch.from_numpy(np.stack([np.asarray(v, np.float32) for v in column]))


def _labels(column: Column) -> torch.Tensor:
    return torch.from_numpy(_numbers(column).astype(np.int64))


def _strings(column: Column) -> list[str]:
    values = column if isinstance(column, np.ndarray) else column.to_pylist()
    return [str(x) for x in values]


def _row_means(spec: BatchSpec, modality: str, speakers: list[str]) -> list[np.ndarray] | None:
    """The mean each row's frames are centred on: its speaker's, else the global one."""
    mean = getattr(spec, f"{modality}_mean")
    if mean is None:
        return None
    own = spec.speaker_means.get(modality, {})
    return [own.get(speaker, mean) for speaker in speakers]


def _modality(
    columns: Mapping[str, Column], modality: str, spec: BatchSpec, speakers: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One modality's (B, T, D) frames, (B, T) mask and (B,) presence. A spec dim of 0 (the
    store, or the model it is read for, has no such modality) reads none of its bytes: every
    row lacks it, frames (B, 1, 0)."""
    dim = getattr(spec, f"{modality}_dim")
    lengths = _numbers(columns[f"{modality}_frames"])
    if dim == 0:
        lengths = np.zeros(len(lengths), np.int64)
        frames, mask = _pad([None] * len(lengths), lengths, 0, None, None)
    else:
        frames, mask = _pad(
            _blob_views(columns[modality], spec.frame_dtype),
            lengths,
            dim,
            _row_means(spec, modality, speakers),
            getattr(spec, f"{modality}_std"),
        )
    return frames, mask, torch.from_numpy(lengths > 0)


def collate(rows: pa.Table | Mapping[str, np.ndarray], spec: BatchSpec) -> Batch:
    """Stored rows (a pyarrow Table, or numpy columns as Ray Data gives them) -> padded `Batch`."""
    columns: Mapping[str, Column] = (
        {name: rows.column(name) for name in rows.column_names}
        if isinstance(rows, pa.Table)
        else rows
    )
    speakers = _strings(columns["speaker"])
    audio, audio_mask, has_audio = _modality(columns, "audio", spec, speakers)
    visual, visual_mask, has_visual = _modality(columns, "visual", spec, speakers)
    categorical = spec.task_kind == "categorical"
    return Batch(
        ids=_strings(columns["id"]),
        speakers=speakers,
        audio=audio,
        audio_mask=audio_mask,
        visual=visual,
        visual_mask=visual_mask,
        has_audio=has_audio,
        has_visual=has_visual,
        label=_labels(columns["label"]) if categorical else None,
        soft_label=_stack(columns.get("soft_label"), spec.num_classes) if categorical else None,
        attributes=None if categorical else _stack(columns.get("attributes"), spec.num_attributes),
    )


class _Collate(ArrowBatchCollateFn):
    """`collate` as Ray Data's collate hook: it runs in the iterator's prefetch threads."""

    def __init__(self, spec: BatchSpec, on_rows: Callable[[pa.Table], None] | None) -> None:
        super().__init__()
        self.spec = spec
        self.on_rows = on_rows

    def __call__(self, batch: pa.Table) -> Batch:
        if self.on_rows is not None:
            self.on_rows(batch)
        return collate(batch, self.spec)


def iter_batches(
    source: ray.data.Dataset | ray.data.DataIterator,
    spec: BatchSpec,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    prefetch_batches: int = 2,
    on_rows: Callable[[pa.Table], None] | None = None,
) -> Iterator[Batch]:
    """Padded batches from a store split's Dataset or a Ray Train dataset shard.

    Batches arrive as pyarrow tables (frame bytes stay in Ray's object store, read in place) and
    are collated in Ray Data's prefetch threads, `prefetch_batches` ahead of the consumer.
    `on_rows`, if given, also sees each batch's rows (from those threads) before collation.
    """
    if batch_size < 1:
        raise S.StoreError(f"batch_size must be >= 1, got {batch_size}")
    yield from source.iter_torch_batches(
        batch_size=batch_size,
        collate_fn=_Collate(spec, on_rows),
        device="cpu",  # a Batch is not moved by Ray: the training loop moves it
        prefetch_batches=prefetch_batches,
        drop_last=drop_last,
        local_shuffle_buffer_size=batch_size * SHUFFLE_BATCHES if shuffle else None,
        local_shuffle_seed=seed if shuffle else None,
    )
