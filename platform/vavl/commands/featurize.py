"""Featurize a corpus of raw media (wav and video files) into a feature store, with Ray Data.

    python pipelines/featurize.py --labels data/crema-d/labels.csv --media data/crema-d/media \
        --out data/crema-d/store --audio-extractor wav2vec2 \
        --audio-model models/wav2vec2-large-robust --audio-layer 12 \
        --visual-extractor effnet-b2 --visual-model models/efficientnet_b2.pth

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python pipelines/featurize.py --labels s3://corpora/x/labels.csv \
        --media s3://corpora/x/media --out s3://stores/x --audio-extractor logmel \
        --npy-dir s3://scratch/x-npy

Each label row's `<id>.wav` (any rate, mono or stereo) and/or `<id>.mp4|.flv|.avi` in --media
is decoded; audio frames come from the .wav, else from the video's sound track; visual frames
are EfficientNet-B2 embeddings of face crops at --visual-fps. The frames then go through the
same validation, rejects and manifest as `vavl-ingest`; the manifest records each extractor,
its weights' sha256, the layer, sample rate and frame rate. Models are read from local paths
only (never downloaded); every node running an actor must see them at the same path.
Exit status: 0 on success, 2 on a refused input (the message says which and why).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from vavl import cli, console
from vavl.commands.ingest import add_store_options, stage_lines

# The extractor and detector names, as vavl.media states them (kept here so that --help
# answers without importing torch, PyAV or OpenCV; tests/unit/test_media_extractors.py checks).
AUDIO_EXTRACTORS = ("wav2vec2", "hubert", "wavlm", "logmel", "egemaps")
VISUAL_EXTRACTORS = ("effnet-b2",)

DESCRIPTION = """Featurize raw media into a feature store with Ray Data: per label row its
<id>.wav and/or <id>.mp4|.flv|.avi in --media become audio frames (wav2vec2 / HuBERT / WavLM from
a local transformers folder, or log-mel filterbanks) and visual frames (EfficientNet-B2 embeddings
of face crops), then go through the ingest's validation, rejects and manifest. Unreadable,
truncated or missing media, silent files, videos without sound (when audio is asked for) and
videos with no face are rejected with their reason in STORE/rejects.parquet."""
EXAMPLES = (
    "vavl-featurize --labels labels.csv --media media --out store --audio-extractor logmel",
    "vavl-featurize --labels labels.csv --media media --out store --audio-extractor wav2vec2 "
    "--audio-model models/w2v2-large-robust --audio-layer 12 --visual-extractor effnet-b2 "
    "--visual-model models/effnet_b2.pth --gpus-per-actor 1 --actors 4 --batch-size 16",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(DESCRIPTION, EXAMPLES)
    parser.add_argument("--labels", required=True, help="labels CSV (CREMA-D or MSP-IMPROV format)")
    parser.add_argument("--media", required=True, help="folder or s3:// URI of <id>.wav / .mp4 ...")
    parser.add_argument("--out", required=True, help="store folder or s3:// URI")
    audio = parser.add_argument_group("audio")
    audio.add_argument(
        "--audio-extractor",
        choices=AUDIO_EXTRACTORS,
        help="frames from the audio (default: none, no audio)",
    )
    audio.add_argument(
        "--audio-model", help="local transformers model folder, required with wav2vec2/hubert/wavlm"
    )
    audio.add_argument(
        "--audio-layer", type=int, help="hidden layer to keep (default: the model's last)"
    )
    audio.add_argument(
        "--chunk-seconds", type=float, default=20.0, help="longest audio one forward pass sees"
    )
    audio.add_argument("--n-mels", type=int, default=80, help="log-mel bands")
    visual = parser.add_argument_group("visual")
    visual.add_argument(
        "--visual-extractor",
        choices=VISUAL_EXTRACTORS,
        help="frames from the video (default: none, no video)",
    )
    visual.add_argument(
        "--visual-model", help="local EfficientNet-B2 state dict file, required with effnet-b2"
    )
    visual.add_argument("--visual-fps", type=float, default=30.0, help="frames/s taken per video")
    visual.add_argument(
        "--face-detector", default="haar", help="'haar' (bundled with OpenCV) or a cascade XML path"
    )
    visual.add_argument("--face-size", type=int, default=288, help="face crop side in pixels")
    visual.add_argument(
        "--frames-per-forward",
        type=int,
        default=32,
        help="face crops per EfficientNet forward pass (larger keeps a GPU busier)",
    )
    ray_group = parser.add_argument_group("Ray")
    ray_group.add_argument("--actors", type=int, default=1, help="actors in the pool")
    ray_group.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0.0,
        help="0: CPU; a fraction (0.25) puts several actors on one GPU",
    )
    ray_group.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per actor")
    ray_group.add_argument("--batch-size", type=int, default=8, help="utterances per actor call")
    store = parser.add_argument_group("store (as vavl-ingest)")
    store.add_argument(
        "--npy-dir", help="also keep the <modality>/<id>.npy frames there (default: not kept)"
    )
    add_store_options(store)
    cli.add_quiet(parser, "stage lines and utterances featurized, checked and written")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(lambda: _featurize(args), prefix="featurize failed")


def _featurize(args: argparse.Namespace) -> int:
    from vavl.media.actor import FeaturizeSpec
    from vavl.media.featurize import featurize_corpus

    spec = FeaturizeSpec(
        audio_extractor=args.audio_extractor,
        audio_model=args.audio_model,
        audio_layer=args.audio_layer,
        chunk_seconds=args.chunk_seconds,
        n_mels=args.n_mels,
        visual_extractor=args.visual_extractor,
        visual_model=args.visual_model,
        visual_fps=args.visual_fps,
        face_detector=args.face_detector,
        face_size=args.face_size,
        frames_per_forward=args.frames_per_forward,
    )
    quiet = args.quiet
    with contextlib.nullcontext() if quiet else stage_lines("vavl.store", "vavl.media"):
        report = featurize_corpus(
            args.labels,
            args.media,
            args.out,
            spec,
            npy_dir=args.npy_dir,
            actors=args.actors,
            gpus_per_actor=args.gpus_per_actor,
            cpus_per_actor=args.cpus_per_actor,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=console.Progress(quiet=quiet),
            corpus=args.corpus,
            shard_rows=args.shard_rows,
            row_group_rows=args.row_group_rows,
            frame_dtype=args.frame_dtype,
            seed=args.seed,
        )
    print(report.summary_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
