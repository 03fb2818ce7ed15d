"""Cost of one VAVL training step at paper size and demo size. A measurement, not a test.

    python bench/model.py [--batch 32 --audio-frames 150 --visual-frames 90 --repeats 3
                           --dtype fp32|bf16 --models demo default paper]

Models: `paper` is `model.preset: paper` (the paper's code's depths: 3 blocks per branch, 2
shared), `default` the library's default sizes (2 per branch, 1 shared), `demo` a small one.

One step = one forward of both branches + fusion on detached representations, the loss
(audio and visual: cross-entropy + 2 x reconstruction MSE; fusion cross-entropy) and one backward,
which is the work of the trainer's visual, audio and fusion phases for one batch. Each model runs
in its own spawned process so that its peak RSS is its own.

Measured 2026-11-30 on a quiet 2-core machine (defaults: batch 32, 150 audio / 90 visual frames,
fp32, 2 threads, median of 3 after 1 warm-up):

    model        params  train step s  forward s  peak RSS MiB
    demo        332,034         0.488      0.076           613
    paper    32,967,314         9.026      2.474          3803

(the first session's 12.6 s / 5.0 s for the paper size was taken with other jobs on the cores).
The "paper" row above is today's `default` (32,967,314 parameters): it was measured before the
paper preset (52,563,858) existed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vavl.config import ModelConfig
from vavl.model import VAVL

MODELS: dict[str, ModelConfig] = {
    "paper": ModelConfig(preset="paper"),
    "default": ModelConfig(),
    "demo": ModelConfig(
        d_model=64,
        audio_dim=64,
        visual_dim=48,
        n_heads=2,
        branch_layers=1,
        conv_kernel=15,
        head_hidden=64,
    ),
}
NUM_CLASSES = 6
RECON_WEIGHT = 2.0


@dataclass
class Result:
    name: str
    params: int
    step_s: float
    forward_s: float
    peak_rss_mib: float


def _step(model: VAVL, inputs: dict[str, torch.Tensor], labels: torch.Tensor, dtype: str) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    with autocast:
        out = model(**inputs, detach_fusion_inputs=True)
        loss = F.cross_entropy(out.predictions.fusion.float(), labels)
        for cond in ("audio", "visual"):
            recon = getattr(out.reconstructions, cond).float()
            target = getattr(out.recon_targets, cond).float()
            loss = loss + F.cross_entropy(getattr(out.predictions, cond).float(), labels)
            loss = loss + RECON_WEIGHT * F.mse_loss(recon, target)
    model.zero_grad(set_to_none=True)
    loss.backward()


def _timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, args: argparse.Namespace) -> Result:
    """Build one model and time its training step and its no-grad forward (runs in a child)."""
    torch.manual_seed(0)
    config = MODELS[name]
    model = VAVL(config, num_outputs=NUM_CLASSES).train()
    inputs = {
        "audio": torch.randn(args.batch, args.audio_frames, config.audio_dim),
        "visual": torch.randn(args.batch, args.visual_frames, config.visual_dim),
    }
    labels = torch.randint(0, NUM_CLASSES, (args.batch,))
    step_s = _timed(lambda: _step(model, inputs, labels, args.dtype), args.repeats)

    def infer() -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bf16" else None
        with torch.no_grad(), autocast or nullcontext():
            model.eval()(**inputs)

    forward_s = _timed(infer, args.repeats)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return Result(
        name, sum(p.numel() for p in model.parameters()), step_s, forward_s, peak_kib / 1024
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--audio-frames", type=int, default=150)
    parser.add_argument("--visual-frames", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["demo", "paper"])
    args = parser.parse_args()
    for flag in ("batch", "audio_frames", "visual_frames", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")

    print(
        f"batch {args.batch}, {args.audio_frames} audio / {args.visual_frames} visual frames, "
        f"{args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats} after 1 warm-up"
    )
    context = mp.get_context("spawn")
    results = []
    for name in args.models:
        with context.Pool(1) as pool:
            results.append(pool.apply(measure, (name, args)))
    print(
        f"{'model':<7} {'params':>12} {'train step s':>13} {'forward s':>10} {'peak RSS MiB':>13}"
    )
    for r in results:
        print(
            f"{r.name:<7} {r.params:>12,} {r.step_s:>13.3f} {r.forward_s:>10.3f} "
            f"{r.peak_rss_mib:>13.0f}"
        )


if __name__ == "__main__":
    main()
