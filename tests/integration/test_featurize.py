"""Raw media to a trained model: `pipelines/featurize.py` on wavs at 8, 16 and 44.1 kHz (mono and
stereo) and short mp4 clips (a drawn face, with or without sound) with a tiny wav2vec2 and a
random EfficientNet-B2, plus one file per bad-input class; the store it writes trains."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

pytest.importorskip("av", reason="needs the media extra (av)")
pytest.importorskip("cv2", reason="needs the media extra (opencv-python-headless)")
pytest.importorskip("transformers", reason="needs the media extra (transformers)")

from tests.factories import tiny_recipe
from vavl import storage
from vavl.media.actor import Featurizer, FeaturizeSpec
from vavl.media.extractors import sha256_files
from vavl.media.featurize import find_media
from vavl.media.samples import write_labels, write_video, write_wav
from vavl.store import FeatureStore
from vavl.store import schema as S
from vavl.train import fit

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
VISUAL_FPS, LAYER, SSL_RATE = 5, 2, 16000
SECONDS = 1.0
# wav2vec2's front end: kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2 (50 frames/s at 16 kHz)
CONV = tuple(zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True))
BAD = {
    "blank": S.NO_FACE,
    "absent": S.MISSING_MEDIA,
    "corrupt": S.UNREADABLE_MEDIA,
    "truncated": S.UNREADABLE_MEDIA,
    "empty": S.EMPTY_AUDIO,
    "mute": S.NO_AUDIO_TRACK,
}


def conv_frames(samples: int) -> int:
    for kernel, stride in CONV:
        samples = (samples - kernel) // stride + 1
    return samples


def featurize_cli():
    spec = importlib.util.spec_from_file_location("featurize_cli", REPO / "pipelines/featurize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_corpus(root: Path) -> dict[str, int]:
    """Media and labels under `root`; id -> expected audio samples at 16 kHz (0: video sound)."""
    media = root / "media"
    media.mkdir()
    audio: dict[str, int] = {}
    rates = [(8000, 1), (16000, 2), (44100, 1), (8000, 2), (16000, 1), (44100, 2)]
    for i, (rate, channels) in enumerate(rates):  # wavs; the first three with a silent video
        write_wav(media / f"w{i}.wav", SECONDS, rate, channels)
        audio[f"w{i}"] = math.ceil(round(SECONDS * rate) * SSL_RATE / rate)
        if i < 3:
            write_video(media / f"w{i}.mp4", SECONDS, 25, audio_rate=None)
    for i in range(4):  # videos with sound: audio from their track
        write_video(media / f"v{i}.mp4", SECONDS, 25, face_every=1 + i % 2)
        audio[f"v{i}"] = 0
    write_video(media / "blank.mp4", SECONDS, 25, face=False)
    whole = write_video(media / "truncated.mp4", SECONDS, 25)
    whole.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (media / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    write_wav(media / "empty.wav", 0.0, SSL_RATE)
    write_video(media / "mute.mp4", SECONDS, 25, audio_rate=None)
    ids = [*audio, *BAD]
    splits = ["train"] * 6 + ["dev", "dev", "test", "test"] + ["train"] * len(BAD)
    write_labels(root / "labels.csv", ids, splits)
    return audio


@pytest.fixture(scope="module")
def featurized(
    tmp_path_factory: pytest.TempPathFactory,
    ray_cluster: None,
    tiny_wav2vec2_dir: Path,
    effnet_weights: Path,
) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("featurize")
    audio = make_corpus(root)
    args = ["--labels", str(root / "labels.csv"), "--media", str(root / "media")]
    args += ["--out", str(root / "store"), "--npy-dir", str(root / "npy")]
    args += ["--audio-extractor", "wav2vec2", "--audio-model", str(tiny_wav2vec2_dir)]
    args += ["--audio-layer", str(LAYER), "--visual-extractor", "effnet-b2"]
    args += ["--visual-model", str(effnet_weights), "--visual-fps", str(VISUAL_FPS)]
    args += ["--face-size", "32", "--frame-dtype", "float32", "--batch-size", "4", "--quiet"]
    assert featurize_cli().main(args) == 0
    return root, audio


def test_manifest_records_extractors_and_each_bad_input_is_a_reject(
    featurized: tuple[Path, dict[str, int]], tiny_wav2vec2_dir: Path, effnet_weights: Path
) -> None:
    root, _ = featurized
    manifest = json.loads((root / "store" / S.MANIFEST_NAME).read_text())
    features = manifest["features"]
    assert features["audio"]["extractor"] == "wav2vec2"
    assert (features["audio"]["frame_rate"], features["audio"]["frame_rate_source"]) == (
        50.0,
        "extractor",
    )
    extraction = features["audio"]["extraction"]
    assert extraction["weights_sha256"] == sha256_files(list(tiny_wav2vec2_dir.iterdir()))[0]
    assert (extraction["layer"], extraction["sample_rate"], features["audio"]["dim"]) == (
        LAYER,
        SSL_RATE,
        16,
    )
    visual = features["visual"]["extraction"]
    assert visual["weights_sha256"] == sha256_files([effnet_weights])[0]
    assert (features["visual"]["frame_rate"], features["visual"]["dim"]) == (VISUAL_FPS, 1408)
    assert 0 < visual["frames_with_face"] < visual["frames"]  # v1, v3: a face in every other
    rejects = pq.read_table(root / "store" / S.REJECTS_NAME).to_pylist()
    assert {r["id"]: r["reason"] for r in rejects} == BAD
    assert all(r["file"] and r["detail"] for r in rejects)
    assert manifest["counts"]["train"]["rows"] + manifest["counts"]["dev"]["rows"] == 8
    assert (root / "npy" / "audio" / "w0.npy").is_file()  # the --npy-dir layout


def test_frame_counts_match_the_stated_rates_and_are_finite(
    featurized: tuple[Path, dict[str, int]],
) -> None:
    root, audio = featurized
    store = FeatureStore.open(str(root / "store"))
    rows = {}
    for split in ("train", "dev", "test"):
        for batch in store.dataset(split).iter_batches(batch_format="pyarrow", batch_size=None):
            rows |= {r["id"]: r for r in batch.to_pylist()}
    assert set(rows) == set(audio)
    for uid, samples in audio.items():
        row = rows[uid]
        if samples:  # from the wav: exactly the front end's count
            assert row["audio_frames"] == conv_frames(samples), uid
        else:  # from the video's aac track: its encoder adds a few ms of padding
            assert abs(row["audio_frames"] - SECONDS * 50) <= 3, uid
        expected_visual = VISUAL_FPS * SECONDS if uid.startswith("v") or uid < "w3" else 0
        assert row["visual_frames"] == expected_visual, uid
        for modality, dim in (("audio", 16), ("visual", 1408)):
            if row[modality] is not None:
                frames = np.frombuffer(row[modality], np.float32).reshape(-1, dim)
                assert np.isfinite(frames).all()


def test_a_featurized_store_trains(
    featurized: tuple[Path, dict[str, int]], tmp_path: Path, mlflow_uri: str
) -> None:
    root, _ = featurized
    cfg = tiny_recipe(
        str(root / "store"),
        "optim.epochs=1",
        "train.workers=1",  # one worker starts faster; DDP is tested in test_train.py
        f"train.storage_path={tmp_path / 'runs'}",
        "train.experiment=test-featurize",
    )
    result = fit(cfg, show_progress=False, evaluate_test=False, log_model=False)
    assert result.best_epoch == 1 and len(result.history) == 1
    assert math.isfinite(result.history[0]["train/loss"])
    assert result.dev  # dev metrics of the epoch


def test_media_on_s3_are_found_and_read(s3_server, tmp_path: Path, effnet_weights: Path) -> None:
    """The actor's work on media in a bucket (read into memory for PyAV), frames to the bucket."""
    prefix = f"s3://{s3_server.bucket}/featurize-media"
    local = make_corpus(tmp_path)
    client = s3_server.client()
    for name in ("w0.wav", "w0.mp4", "v0.mp4"):
        body = (tmp_path / "media" / name).read_bytes()
        client.put_object(Bucket=s3_server.bucket, Key=f"featurize-media/{name}", Body=body)
    spec = FeaturizeSpec(
        audio_extractor="logmel",
        visual_extractor="effnet-b2",
        visual_model=str(effnet_weights),
        visual_fps=VISUAL_FPS,
        face_size=32,
    )
    plan, missing = find_media(prefix, ["w0", "v0", "w1"], spec)
    assert [(p["id"], p["audio_path"].rsplit("/", 1)[-1]) for p in plan] == [
        ("w0", "w0.wav"),
        ("v0", "v0.mp4"),
    ]
    assert missing["w1"][0] == S.MISSING_MEDIA
    fs, _ = storage.resolve(prefix)
    npy_fs, npy_root = storage.resolve(f"{prefix}-npy")
    actor = Featurizer(spec=spec, media_fs=fs, npy_fs=npy_fs, npy_root=npy_root)
    for row in plan:
        result = actor.utterance(row)
        assert result["reason"] is None and result["visual_frames"] == VISUAL_FPS * SECONDS
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="featurize-media-npy/")
    keys = sorted(o["Key"].split("/", 1)[1] for o in listed["Contents"])
    assert keys == ["audio/v0.npy", "audio/w0.npy", "visual/v0.npy", "visual/w0.npy"]
    assert isinstance(fs, pafs.S3FileSystem) and local["w0"] > 0
