"""The feature store's row schema, reject reason codes and format constants.

One Parquet row per utterance. Frames are one binary blob per row and modality: the C-order bytes
of a (T, D) array in the manifest's `frame_dtype`, so the reader gets them back with a zero-copy
`np.frombuffer(...).reshape(T, D)` and Ray Data never sees ragged list columns.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.parquet"
TMP_PREFIX = "_tmp-"  # STORE/_tmp-<uuid>/: one ingest's staging prefix
STAGING_HEARTBEAT = "heartbeat"  # STORE/_tmp-<uuid>/heartbeat: rewritten after every stage
# STORE/_failed-ingest-rejects.parquet: the rejects of an ingest refused because most rows were
# rejected (no manifest, no shards: not a store); removed by the next ingest into STORE.
FAILED_REJECTS_NAME = "_failed-ingest-rejects.parquet"
FRAME_DTYPES = ("float16", "float32")
SPLITS = ("train", "dev", "test")
MODALITIES = ("audio", "visual")
MODALITY_COMBINATIONS = ("av", "audio", "visual")
# Frame rates (frames/s) recorded when the ingest is not told them (frame_rate_source "default").
NOMINAL_FRAME_RATES = {"audio": 50.0, "visual": 30.0}

ROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("speaker", pa.string()),
        pa.field("gender", pa.string()),
        pa.field("split", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),  # class index; -1 for attribute corpora
        pa.field("soft_label", pa.list_(pa.float32())),  # (K,) or null
        pa.field("attributes", pa.list_(pa.float32())),  # (A,) or null
        pa.field("audio", pa.binary()),  # (T_a, D_a) frames in frame_dtype, or null
        pa.field("audio_frames", pa.int32(), nullable=False),  # 0 when absent
        pa.field("visual", pa.binary()),
        pa.field("visual_frames", pa.int32(), nullable=False),
    ]
)
ROW_COLUMNS = ROW_SCHEMA.names

# What the per-utterance load step adds to a row: why it was rejected (null when it was not).
CHECK_SCHEMA = pa.schema(
    [
        *ROW_SCHEMA,
        pa.field("reject_reason", pa.string()),
        pa.field("reject_detail", pa.string()),
        pa.field("reject_file", pa.string()),
        pa.field("csv_row", pa.int64()),
    ]
)

# The label rows that enter the per-utterance load step.
LABEL_ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("row", pa.int64()),
        ("speaker", pa.string()),
        ("gender", pa.string()),
        ("split", pa.string()),
        ("label", pa.int32()),
        ("soft_label", pa.list_(pa.float32())),
        ("attributes", pa.list_(pa.float32())),
        ("audio_path", pa.string()),
        ("visual_path", pa.string()),
    ]
)

# STORE/speakers.parquet: each speaker's frame mean per modality, over all its rows (features
# only, no labels), for per-speaker normalisation (`data.normalize: speaker`).
SPEAKERS_NAME = "speakers.parquet"
SPEAKER_STATS_SCHEMA = pa.schema(
    [
        ("speaker", pa.string()),
        ("modality", pa.string()),
        ("utterances", pa.int64()),
        ("frames", pa.int64()),
        ("mean", pa.list_(pa.float32())),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("row", pa.int64()),
        ("file", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# Reject reason codes (stable: they are counted in the manifest and asserted in tests).
NON_FINITE = "non_finite"
WRONG_RANK = "wrong_rank"
WRONG_DIM = "wrong_dim"
ZERO_FRAMES = "zero_frames"
BAD_DTYPE = "bad_dtype"
UNREADABLE = "unreadable"
NO_FEATURES = "no_features"
LABEL_OUT_OF_RANGE = "label_out_of_range"
LABEL_INVALID = "label_invalid"
SOFT_LABEL_SUM = "soft_label_sum"
UNKNOWN_SPLIT = "unknown_split"
DUPLICATE_ID = "duplicate_id"
MISSING_ID = "missing_id"
# Raw media (vavl.media, before the .npy features exist): why an utterance yields no features.
MISSING_MEDIA = "missing_media"  # no <id>.wav / .mp4 / .flv / .avi for a label row
UNREADABLE_MEDIA = "unreadable_media"  # a corrupt or truncated container, or no decodable stream
NO_AUDIO_TRACK = "no_audio_track"  # audio asked for, and the only file is a video without sound
EMPTY_AUDIO = "empty_audio"  # an audio track with no samples
NO_FACE = "no_face"  # a video in which no frame shows a face
REASONS = (
    NON_FINITE,
    WRONG_RANK,
    WRONG_DIM,
    ZERO_FRAMES,
    BAD_DTYPE,
    UNREADABLE,
    NO_FEATURES,
    LABEL_OUT_OF_RANGE,
    LABEL_INVALID,
    SOFT_LABEL_SUM,
    UNKNOWN_SPLIT,
    DUPLICATE_ID,
    MISSING_ID,
    MISSING_MEDIA,
    UNREADABLE_MEDIA,
    NO_AUDIO_TRACK,
    EMPTY_AUDIO,
    NO_FACE,
)


class StoreError(Exception):
    """A feature store that cannot be written or read as asked (the message names what and why)."""
