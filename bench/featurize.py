"""Throughput of the featurize actors' work per extractor: utterances/s. A measurement, not a test.

    python bench/featurize.py [--extractors logmel wav2vec2-base wav2vec2-large effnet-b2]
                              [--utterances 8] [--seconds 3] [--device cpu|cuda]
                              [--visual-fps 30] [--face-size 288] [--no-record]

Each extractor runs the Ray actor's own code (`vavl.media.actor.Featurizer.utterance`: decode,
resample or detect faces and crop, extract, write the .npy) in this process, on synthetic media
made here (`vavl.media.samples`: a 44.1 kHz stereo sine sweep per audio utterance; a 25 frames/s
mp4 with a drawn face per video utterance) and on models with random weights of the published
sizes (the same compute as trained ones; nothing is downloaded): wav2vec2-base (12 layers x 768)
and wav2vec2-large (24 x 1024, the paper's wav2vec2-large-robust), at the paper's layer 12 for
the large model (only layers 0..13 run) and the last layer for base; EfficientNet-B2 on
`--face-size` crops at `--visual-fps`. One utterance warms up; the next `--utterances` are timed.
Ray's own overhead (actor start, scheduling) is not in these figures: see the ingest's summary.

Writes BENCHMARKS.md ("featurize (<device>)"). Run it alone: 2 busy cores halve the figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import torch
from record import cpu_model, record, run_alone

from vavl import console
from vavl.media.actor import Featurizer, FeaturizeSpec
from vavl.media.samples import random_effnet, tiny_wav2vec2, write_video, write_wav

AUDIO_RATE, AUDIO_CHANNELS, VIDEO_FPS = 44100, 2, 25
# name -> (layers, hidden, heads, conv channels, positional conv kernel, groups, layer kept)
WAV2VEC2_SIZES = {
    "wav2vec2-base": (12, 768, 12, 512, 128, 16, 12),
    "wav2vec2-large": (24, 1024, 16, 512, 128, 16, 12),
}
EXTRACTORS = ("logmel", *WAV2VEC2_SIZES, "effnet-b2")


@dataclass
class Result:
    name: str
    load_s: float
    seconds: float  # the timed utterances, in all
    utterances: int
    frames: int


def spec_for(name: str, models: Path, args: argparse.Namespace) -> FeaturizeSpec:
    if name == "logmel":
        return FeaturizeSpec(audio_extractor="logmel", device=args.device)
    if name == "effnet-b2":
        weights = models / "effnet_b2.pt"
        if not weights.exists():
            random_effnet(weights)
        return FeaturizeSpec(
            visual_extractor="effnet-b2",
            visual_model=str(weights),
            visual_fps=args.visual_fps,
            face_size=args.face_size,
            device=args.device,
        )
    layers, hidden, heads, conv, kernel, groups, layer = WAV2VEC2_SIZES[name]
    folder = models / name
    tiny_wav2vec2(
        folder,
        layers=layers,
        hidden=hidden,
        heads=heads,
        conv_width=conv,
        pos_kernel=kernel,
        pos_groups=groups,
    )
    return FeaturizeSpec(
        audio_extractor="wav2vec2", audio_model=str(folder), audio_layer=layer, device=args.device
    )


def measure(name: str, media: dict[str, list[str]], work: Path, args) -> Result:
    spec = spec_for(name, work / "models", args)
    local = pafs.LocalFileSystem()
    started = time.perf_counter()
    actor = Featurizer(spec=spec, media_fs=local, npy_fs=local, npy_root=str(work / name))
    load_s = time.perf_counter() - started
    kind = "video" if spec.visual_extractor else "audio"
    paths = media[kind]
    frames = 0
    for i, path in enumerate(paths):
        if i == 1:  # the first utterance warms up
            if args.device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        row = dict(id=f"u{i}", audio_path=path if kind == "audio" else None)
        row["video_path"] = path if kind == "video" else None
        out = actor.utterance(row)
        if out["reason"] is not None:
            raise RuntimeError(f"{name}: {path} rejected: {out['reason']}: {out['detail']}")
        frames += out["audio_frames"] + out["visual_frames"] if i else 0
    if args.device == "cuda":
        torch.cuda.synchronize()
    return Result(name, load_s, time.perf_counter() - started, len(paths) - 1, frames)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--extractors", nargs="+", choices=EXTRACTORS, default=list(EXTRACTORS))
    parser.add_argument("--utterances", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each utterance")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--visual-fps", type=float, default=30.0)
    parser.add_argument("--face-size", type=int, default=288)
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()
    run_alone()
    hardware = torch.cuda.get_device_name() if args.device == "cuda" else cpu_model()
    print(f"{hardware}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="bench-featurize-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        (work / "models").mkdir()
        count = args.utterances + 1
        media = {
            "audio": [
                str(write_wav(work / "media" / f"a{i}.wav", args.seconds, AUDIO_RATE, 2))
                for i in range(count)
            ],
            "video": [
                str(write_video(work / "media" / f"v{i}.mp4", args.seconds, VIDEO_FPS))
                for i in range(count)
            ],
        }
        results = []
        for name in args.extractors:
            results.append(measure(name, media, work, args))
            r = results[-1]
            print(f"{name}: {r.utterances / r.seconds:.2f} utterances/s")
    header = ["extractor", "load s", "utterances/s", "x real time", "frames/s"]
    rows = [
        [
            r.name,
            f"{r.load_s:.1f}",
            f"{r.utterances / r.seconds:.2f}",
            f"{r.utterances * args.seconds / r.seconds:.1f}",
            f"{r.frames / r.seconds:.0f}",
        ]
        for r in results
    ]
    table = console.table(header, rows)
    setting = (
        f"{args.device} ({hardware}), {torch.get_num_threads()} threads, one actor's work in one "
        f"process; {args.utterances} utterances of {args.seconds:g} s after 1 warm-up (audio: "
        f"{AUDIO_RATE} Hz stereo wav; video: {VIDEO_FPS} frames/s mp4 with one face, sampled at "
        f"{args.visual_fps:g} frames/s, {args.face_size} px crops); random weights of the "
        "published sizes"
    )
    print(setting)
    print(table)
    if not args.no_record:
        record(f"featurize ({args.device})", f"{setting}.\n\n```\n{table}\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
