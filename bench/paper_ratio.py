"""Our paper-preset training step against the paper's own code's step, in one run. Not a test.

    python bench/paper_ratio.py --anchor PATH/paper_step.py --ref-tree PATH/VAVL-extracted
                                [--precision fp32|bf16|auto] [--batches 3] [--no-record]

The anchor (`paper_step.py`, kept outside this repository with its notes) runs the paper's public
training step on pre-extracted features: its modules, its nine optimisers, its three passes per
batch (batch 32, 150 audio / 90 visual frames, fp32 on CPU). `--ref-tree` is the paper's repository
extracted with `git archive` (the anchor reads it through VAVL_REF_TREE). This script runs the
anchor, then `bench/model.py`'s paper preset at the same batch and frame counts in `--precision`,
each in its own process, and reports samples/s, the ratio and the peak RSS of each.

Writes BENCHMARKS.md ("against the paper's code (<precision>)"). Run it alone.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from model import build_parser, measure
from record import cpu_model, record, run_alone

from vavl import console

BATCH, AUDIO_FRAMES, VISUAL_FRAMES = 32, 150, 90


def run_anchor(anchor: Path, ref_tree: Path, batches: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "anchor.json"
        command = [sys.executable, str(anchor), "--variant", "paper_fp32", "--warmup", "1"]
        command += ["--batches", str(batches), "--max-batches", str(batches), "--json", str(out)]
        env = {**os.environ, "VAVL_REF_TREE": str(ref_tree)}
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        (result,) = json.loads(out.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--anchor", type=Path, required=True, help="the anchor's paper_step.py")
    parser.add_argument("--ref-tree", type=Path, required=True, help="the paper's code, extracted")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32")
    parser.add_argument("--batches", type=int, default=3, help="timed batches of each")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    run_alone()
    for path in (args.anchor, args.ref_tree):
        if not path.exists():
            parser.error(f"{path} does not exist")

    ours_args = build_parser().parse_args(
        [
            *("--batch", str(BATCH), "--audio-frames", str(AUDIO_FRAMES)),
            *("--visual-frames", str(VISUAL_FRAMES), "--precision", args.precision),
            *("--repeats", str(args.batches)),
        ]
    )
    with mp.get_context("spawn").Pool(1) as pool:  # ours first: it is the shorter to fail
        ours = pool.apply(measure, ("paper", ours_args))
    paper = run_anchor(args.anchor, args.ref_tree, args.batches)
    ours_rate = BATCH / ours.step_s
    rows = [
        [
            "paper's code (fp32)",
            f"{paper['parameters']['used_in_step']:,}",
            f"{paper['median_s_per_batch']:.2f}",
            f"{paper['samples_per_s']:.2f}",
            "1.00",
            f"{paper['peak_rss_mib']:.0f}",
        ],
        [
            f"ours, paper preset ({args.precision})",
            f"{ours.params:,}",
            f"{ours.step_s:.2f}",
            f"{ours_rate:.2f}",
            f"{ours_rate / paper['samples_per_s']:.2f}",
            f"{ours.peak_mib:.0f}",
        ],
    ]
    header = ["step", "parameters used", "s/batch", "samples/s", "ratio", "peak RSS MiB"]
    table = console.table(header, rows)
    setting = (
        f"batch {BATCH}, {AUDIO_FRAMES} audio / {VISUAL_FRAMES} visual frames, median of "
        f"{args.batches} batches after 1 warm-up each, on {cpu_model()}"
    )
    print(setting)
    print(table)
    if not args.no_record:
        record(f"against the paper's code ({args.precision})", f"{setting}.\n\n```\n{table}\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
