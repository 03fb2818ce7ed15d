"""Write a synthetic audio-visual emotion corpus with known ideal scores (see `vavl.synthetic`).

    ray job submit --working-dir . -- python pipelines/synthesize.py \
        --out /tmp/vavl-synth --utterances 600 --seed 0 --task categorical

Locally: `python pipelines/synthesize.py --out DIR --utterances N --seed S`. The folder gets
labels.csv (CREMA-D or MSP-IMPROV columns), audio/<id>.npy, visual/<id>.npy and ideal.json.
A non-empty folder is refused unless --overwrite is given.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vavl import cli
from vavl.config import CONDITIONS
from vavl.synthetic import CorpusSummary, write_corpus

DESCRIPTION = """Write a synthetic audio-visual emotion corpus with known ideal scores (see
vavl.synthetic): --out gets labels.csv (CREMA-D or MSP-IMPROV columns), audio/<id>.npy,
visual/<id>.npy and ideal.json, ready for vavl-ingest. A non-empty folder is refused unless
--overwrite is given."""
EXAMPLES = (
    "vavl-synthesize --out /tmp/vavl-synth --utterances 600",
    "vavl-synthesize --out /tmp/vavl-attr --utterances 600 --task attributes --unpaired-share 0.3",
)


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(DESCRIPTION, EXAMPLES)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--utterances", type=int, required=True, help="number of utterances")
    p.add_argument("--seed", type=int, default=0, help="seeds everything the corpus draws")
    p.add_argument(
        "--task",
        choices=["categorical", "attributes"],
        default="categorical",
        help="emotion classes (CREMA-D columns) or attribute scores (MSP-IMPROV columns)",
    )
    p.add_argument("--audio-dim", type=int, default=1024, help="audio frame size (50 frames/s)")
    p.add_argument("--visual-dim", type=int, default=1408, help="visual frame size (30 frames/s)")
    p.add_argument(
        "--unpaired-share",
        type=float,
        default=0.0,
        help="share of TRAIN utterances with one modality only (half audio, half visual)",
    )
    p.add_argument("--speakers", type=int, default=12, help="number of speakers")
    p.add_argument("--overwrite", action="store_true", help="replace a previous corpus in --out")
    return p


def _table(summary: CorpusSummary) -> str:
    lines = [f"{'split':<6} {'av':>6} {'audio':>6} {'visual':>6}"]
    for split, n in summary.counts.items():
        lines.append(f"{split:<6} {n['av']:>6} {n['audio']:>6} {n['visual']:>6}")
    metrics = [k for k in summary.ideal["av"] if k != "micro_f1"]
    lines += ["", "ideal on test: " + "  ".join(metrics)]
    for cond in CONDITIONS:
        lines.append(f"  {cond:<7}" + "  ".join(f"{summary.ideal[cond][m]:.3f}" for m in metrics))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # ValueError: a setting write_corpus refuses; the others: --out is not a usable folder.
    errors = (ValueError, FileExistsError, NotADirectoryError)
    return cli.run(lambda: _synthesize(args), bad_input=errors)


def _synthesize(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = write_corpus(
        args.out,
        utterances=args.utterances,
        seed=args.seed,
        task=args.task,
        audio_dim=args.audio_dim,
        visual_dim=args.visual_dim,
        unpaired_share=args.unpaired_share,
        speakers=args.speakers,
        overwrite=args.overwrite,
    )
    print(f"wrote {summary.task} corpus to {summary.out}")
    print(_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
