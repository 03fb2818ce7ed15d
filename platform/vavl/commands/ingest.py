"""Ingest a corpus (labels CSV + per-utterance .npy features) into a feature store, with Ray Data.

    python pipelines/ingest.py --labels data/crema-d/labels.csv --audio data/crema-d/audio \
        --visual data/crema-d/visual --out data/crema-d/store --shard-rows 512

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python pipelines/ingest.py --labels s3://corpora/crema-d/labels.csv \
        --audio s3://corpora/crema-d/audio --visual s3://corpora/crema-d/visual \
        --out s3://stores/crema-d --frame-dtype float16

A corpus without one modality says so: `--no-visual` (or `--no-audio`) instead of the folder; a
folder that does not exist is an error. Feature sizes default to the one most files have;
frame rates (frames/s, recorded in the manifest) to 50 for audio and 30 for visual.

Inputs and output are local paths or s3:// URIs; S3 endpoint and credentials come from the
standard AWS_* environment variables (AWS_ENDPOINT_URL for an S3-compatible server), never from
the command line. The store is complete only once STORE/manifest.json exists (written last).
The console shows one line per ingest stage, counts inside the long stages (a live line on a
terminal, a plain line every 30 s elsewhere), and the closing summary table; `--quiet` keeps only
the summary (Ray Data's progress bars and INFO lines are off; warnings and errors still show).
Exit status: 0 on success, 2 on a refused input or target (the message says which and why),
including an ingest in which more than half of the label rows are rejected for one reason.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from vavl import cli, console
from vavl.store import ingest_corpus
from vavl.store.ingest import DEFAULT_ROW_GROUP_ROWS, DEFAULT_SHARD_ROWS
from vavl.store.labels import CORPORA
from vavl.store.schema import FRAME_DTYPES

DESCRIPTION = """Ingest a corpus (a labels CSV and per-utterance .npy features) into a feature store
with Ray Data: every file is checked, rejected rows are kept with their reason, frames are written
as Parquet shards with per-speaker and train statistics. The store is complete once
STORE/manifest.json (written last) exists. Inputs and output are local paths or s3:// URIs; S3
endpoint and credentials come from the AWS_* environment variables, never from the command line.
Ingest also exits 2 when more than half of the label rows are rejected for one reason."""
EXAMPLES = (
    "vavl-ingest --labels data/crema-d/labels.csv --audio data/crema-d/audio "
    "--visual data/crema-d/visual --out data/crema-d/store",
    "vavl-ingest --labels s3://corpora/x/labels.csv --audio s3://corpora/x/audio --no-visual "
    "--out s3://stores/x --audio-extractor wav2vec2-large",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(DESCRIPTION, EXAMPLES)
    parser.add_argument("--labels", required=True, help="labels CSV (CREMA-D or MSP-IMPROV format)")
    for modality, dim in (("audio", "D_a"), ("visual", "D_v")):
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument(f"--{modality}", help=f"folder of <id>.npy {modality} frames (T, {dim})")
        group.add_argument(
            f"--no-{modality}",
            action="store_true",
            help=f"the corpus has no {modality} features (stored as absent)",
        )
    parser.add_argument("--out", required=True, help="store folder or s3:// URI")
    add_store_options(parser)
    parser.add_argument(
        "--audio-dim", type=int, help="audio frame size (default: the size most files have)"
    )
    parser.add_argument(
        "--visual-dim", type=int, help="visual frame size (default: the size most files have)"
    )
    parser.add_argument("--audio-fps", type=float, help="audio frames/s (default: 50)")
    parser.add_argument("--visual-fps", type=float, help="visual frames/s (default: 30)")
    parser.add_argument(
        "--audio-extractor",
        help="recorded in the manifest, e.g. wav2vec2-large (default: none recorded)",
    )
    parser.add_argument(
        "--visual-extractor",
        help="recorded in the manifest, e.g. effnet-b2 (default: none recorded)",
    )
    cli.add_quiet(parser, "stage lines and utterances loaded, checked and written")
    return parser.parse_args(argv)


def add_store_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How a store is written: the flags every command that writes one shares (ingest,
    featurize)."""
    parser.add_argument(
        "--corpus", choices=sorted(CORPORA), help="label format (default: from the CSV's columns)"
    )
    parser.add_argument(
        "--shard-rows", type=int, default=DEFAULT_SHARD_ROWS, help="utterances per Parquet shard"
    )
    parser.add_argument(
        "--row-group-rows",
        type=int,
        default=DEFAULT_ROW_GROUP_ROWS,
        help="utterances per Parquet row group (what a reader holds in memory at once)",
    )
    parser.add_argument(
        "--frame-dtype", choices=FRAME_DTYPES, default="float16", help="stored frame precision"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds the shuffle of utterances across shards"
    )


@contextlib.contextmanager
def stage_lines(*names: str) -> Iterator[None]:
    """The stage lines (INFO on the loggers `names`, default `vavl.store`: the ingest's) on
    stdout while the command runs."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
    loggers = [logging.getLogger(name) for name in names or ("vavl.store",)]
    for progress in loggers:
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
    try:
        yield
    finally:
        for progress in loggers:
            progress.removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return cli.run(lambda: _ingest(args), prefix="ingest failed")


def _ingest(args: argparse.Namespace) -> int:
    extractors = {
        k: v for k, v in (("audio", args.audio_extractor), ("visual", args.visual_extractor)) if v
    }
    quiet = args.quiet
    with contextlib.nullcontext() if quiet else stage_lines():
        report = ingest_corpus(
            args.labels,
            args.audio,
            args.visual,
            args.out,
            corpus=args.corpus,
            shard_rows=args.shard_rows,
            row_group_rows=args.row_group_rows,
            frame_dtype=args.frame_dtype,
            overwrite=args.overwrite,
            audio_dim=args.audio_dim,
            visual_dim=args.visual_dim,
            no_audio=args.no_audio,
            no_visual=args.no_visual,
            audio_fps=args.audio_fps,
            visual_fps=args.visual_fps,
            extractors=extractors,
            seed=args.seed,
            progress=console.Progress(quiet=quiet),
        )
    print(report.summary_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
