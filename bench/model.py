"""Cost of one VAVL training step, as the trainer takes it. A measurement, not a test.

    python bench/model.py [--models demo default paper] [--batch 32] [--audio-frames 150]
                          [--visual-frames 90] [--precision fp32|bf16|fp16|auto]
                          [--device cpu|cuda] [--checkpointing] [--accumulate K]
                          [--repeats 3] [--no-record]

One step = `vavl.train.step.train_step`, the trainer's own per-batch work: the visual, audio and
fusion phases' losses in one forward (fusion on detached representations), one backward, gradient
clipping and one Adam step. Inputs are random, every row has both modalities and every frame is
real (no padding), as in the paper's anchor (`shared/anchors/paper_step.md`). With
`--accumulate K` a step is K batches of batch/K rows, their gradients accumulated into one Adam
step, as the trainer takes it with `optim.accumulate_batches: K` (same samples per step, the
activations of batch/K).

Models: `paper` is `model.preset: paper` (the paper's code's depths: 3 conformer blocks per
branch, 2 shared, d 512), `default` the library's default sizes (2 per branch, 1 shared), `demo`
the `make demo` recipe's size.

Reported per model: parameters, median step seconds and samples/s, model FLOPs per step (3 x
the forward's, counted by torch's FlopCounterMode: matmuls, convolutions, attention), the FLOP
rate that makes and its share of the device's measured dense matmul rate in the same precision
(MFU), the no-grad forward, and the training steps' peak memory: RSS of the model's own process
on CPU (taken before the FLOP count and the forward timing), torch's peak allocation on CUDA.
Each model runs in its own spawned process.

Writes BENCHMARKS.md ("model step (<device>, <precision>)"). Run it alone: a step timed while
another process uses a core is much slower (OpenMP threads wait for each other).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from record import cpu_model, record, run_alone
from torch.utils.flop_counter import FlopCounterMode

from vavl import console
from vavl.batch import Batch
from vavl.config import ExperimentConfig, ModelConfig, validate_config
from vavl.model import VAVL
from vavl.objectives import TaskObjective
from vavl.runtime import autocast, resolve_precision
from vavl.train.step import StepSettings, backward_pass, optimizer_step, train_step

MODELS: dict[str, dict] = {
    "paper": {"preset": "paper"},
    "default": {},
    "demo": {  # configs/demo.yaml's model at the demo corpus's feature dims
        "d_model": 64,
        "n_heads": 4,
        "ff_mult": 4,
        "conv_kernel": 15,
        "branch_layers": 1,
        "head_hidden": 64,
        "audio_dim": 64,
        "visual_dim": 48,
    },
}
RECONSTRUCTION_WEIGHT = 2.0
GRAD_CLIP = 1.0


@dataclass
class Result:
    name: str
    params: int
    step_s: float
    forward_s: float
    flops: float
    peak_mib: float


def experiment(name: str, args: argparse.Namespace) -> ExperimentConfig:
    model = {**MODELS[name], "activation_checkpointing": args.checkpointing}
    return validate_config({"model": model, "task": {"kind": "categorical", "labels": "hard"}})


def random_batch(model: ModelConfig, args: argparse.Namespace, classes: int) -> Batch:
    b = args.batch
    gen = torch.Generator().manual_seed(0)
    return Batch(
        ids=[str(i) for i in range(b)],
        speakers=["s"] * b,
        audio=torch.randn(b, args.audio_frames, model.audio_dim, generator=gen),
        audio_mask=torch.ones(b, args.audio_frames, dtype=torch.bool),
        visual=torch.randn(b, args.visual_frames, model.visual_dim, generator=gen),
        visual_mask=torch.ones(b, args.visual_frames, dtype=torch.bool),
        has_audio=torch.ones(b, dtype=torch.bool),
        has_visual=torch.ones(b, dtype=torch.bool),
        label=torch.randint(0, classes, (b,), generator=gen),
    )


def _timed(fn, repeats: int, sync) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def matmul_rate(device: torch.device, precision: str, n: int = 2048, seconds: float = 2.0) -> float:
    """Dense (n x n) @ (n x n) FLOP/s on `device` in `precision`, timed for about `seconds`."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = device_sync(device)
    torch.mm(a, b)
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        calls += 1
        sync()
    return 2 * n**3 * calls / (time.perf_counter() - start)


def measure(name: str, args: argparse.Namespace) -> Result:
    """Build one model and time its training step and its no-grad forward (runs in a child)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = experiment(name, args)
    precision = resolve_precision(args.precision, device)
    model = VAVL(cfg.model, num_outputs=cfg.task.num_outputs).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    objective = TaskObjective.from_config(cfg.task)
    batch = random_batch(cfg.model, args, cfg.task.num_outputs).to(device)
    settings = StepSettings(precision, RECONSTRUCTION_WEIGHT, GRAD_CLIP)

    parts = [
        batch.select(
            torch.arange(args.batch, device=device) // (args.batch // args.accumulate) == k
        )
        for k in range(args.accumulate)
    ]

    def step() -> None:
        if args.accumulate == 1:
            train_step(model, optimizer, scaler, batch, objective, settings)
            return
        for part in parts:
            backward_pass(model, scaler, part, objective, settings, 1.0 / args.accumulate)
        optimizer_step(model, optimizer, scaler, settings.grad_clip)

    sync = device_sync(device)
    step_s = _timed(step, args.repeats, sync)
    # The training step's peak, before anything else runs in this process.
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def forward() -> None:
        with torch.no_grad(), autocast(device, precision):
            model.eval()(**batch.inputs(model.modalities))
        model.train()

    # Model FLOPs: 3 x the forward's (backward = 2 x forward), the usual MFU convention. Counting
    # the backward itself would count depthwise-convolution gradients as dense convolutions.
    with FlopCounterMode(display=False) as counter:
        forward()
    flops = 3.0 * float(counter.get_total_flops())
    forward_s = _timed(forward, args.repeats, sync)
    params = sum(p.numel() for p in model.parameters())
    return Result(name, params, step_s, forward_s, flops, peak_mib)


def build_parser() -> argparse.ArgumentParser:
    """This bench's flags; `bench/paper_ratio.py` parses its own step's settings with it too."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["demo", "paper"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--audio-frames", type=int, default=150)
    parser.add_argument("--visual-frames", type=int, default=90)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default="fp32")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument(
        "--accumulate", type=int, default=1, help="batches of batch/K rows per optimizer step"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    run_alone()
    for flag in ("batch", "audio_frames", "visual_frames", "repeats", "accumulate"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.batch % args.accumulate:
        parser.error(f"--batch {args.batch} is not a multiple of --accumulate {args.accumulate}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(f"{hardware}, {torch.get_num_threads()} threads, precision {precision}", flush=True)

    context = mp.get_context("spawn")
    results = []
    for name in args.models:
        with context.Pool(1) as pool:
            results.append(pool.apply(measure, (name, args)))
    with context.Pool(1) as pool:  # in its own process too: the same thread pool as the models
        peak = pool.apply(matmul_rate, (device, precision))

    memory = "peak CUDA MiB" if device.type == "cuda" else "peak RSS MiB"
    header = ["model", "params", "step s", "samples/s", "GFLOP/step", "GFLOP/s", "MFU"]
    header += ["forward s", memory]
    rows = [
        [
            r.name,
            f"{r.params:,}",
            f"{r.step_s:.3f}",
            f"{args.batch / r.step_s:.2f}",
            f"{r.flops / 1e9:.1f}",
            f"{r.flops / r.step_s / 1e9:.1f}",
            f"{r.flops / r.step_s / peak:.0%}",
            f"{r.forward_s:.3f}",
            f"{r.peak_mib:.0f}",
        ]
        for r in results
    ]
    table = console.table(header, rows)
    setting = (
        f"batch {args.batch}, {args.audio_frames} audio / {args.visual_frames} visual frames, "
        f"{precision} (asked: {args.precision}), "
        f"activation checkpointing {'on' if args.checkpointing else 'off'}, "
        f"{args.accumulate} batch(es) of {args.batch // args.accumulate} per optimizer step, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} steps after 1 warm-up; "
        f"measured {precision} matmul rate on {hardware}: {peak / 1e9:.1f} GFLOP/s (MFU is the "
        "model's FLOP rate as a share of it)"
    )
    print(setting)
    print(table)
    if not args.no_record:
        suffix = ", checkpointing" if args.checkpointing else ""
        if args.accumulate > 1:
            suffix += f", {args.accumulate} x {args.batch // args.accumulate} accumulated"
        record(
            f"model step ({args.device}, {precision}{suffix})", f"{setting}.\n\n```\n{table}\n```"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
