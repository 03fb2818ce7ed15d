"""Process-level set-up shared by every entry point: quiet Ray, devices, mixed precision, seeds."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

# Set before Ray starts so that every worker process inherits them.
QUIET_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_DEDUP_LOGS": "0",
    # Tune's older console path: at verbose 0 it prints nothing (the newer one still prints its
    # configuration box and results path); sweeps print their own lines (vavl.sweep_console).
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per checkpoint download
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # sweeps add the CSV and JSON loggers they read
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


# Notices a user cannot act on, dropped from the named loggers. Token authentication is the
# platform's choice (infra/ and the tests start clusters with it); Ray warns about it at every
# ray.init.
DROPPED_NOTICES = {
    "ray._private.authentication.authentication_token_setup": (
        "Token authentication is enabled for this Ray cluster",
    ),
    "ray.data._internal.progress": ("Progress bars disabled",),
}


class _DropNotices(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def drop_notices() -> None:
    """Attach the DROPPED_NOTICES filters (once per logger)."""
    for name, prefixes in DROPPED_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(prefixes))


def quiet_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in ("ray", "ray.train", "ray.tune", "ray.data", "mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    drop_notices()


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local one; quiet console."""
    import ray

    quiet_environment()
    if not ray.is_initialized():
        ray.init(
            address=address,
            num_cpus=num_cpus if address is None and "RAY_ADDRESS" not in os.environ else None,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    quiet_ray_data()


def quiet_ray_data() -> None:
    """Ray Data in this process: no progress bars, no INFO lines; warnings and errors still show.

    Ray Data logs each execution's start and plan at INFO, and a progress table every 10 s when
    stdout is not a terminal; its progress bars are one per execution (an ingest runs six).
    Callers print their own progress. Turning the bars off makes Ray Data warn once that it did:
    that one notice is dropped.
    """
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    drop_notices()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# CPU features that compute bf16 dot products in hardware, as /proc/cpuinfo and
# torch.cpu.get_capabilities() name them: x86 AMX or AVX512-BF16; arm64 BF16 (Armv8.6) or SVE-BF16.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16", "bf16", "sve_bf16")
_WARNED: set[str] = set()  # the device types already warned about a slow bf16
_log = logging.getLogger(__name__)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature names: torch.cpu.get_capabilities() where this torch has it, else
    the flags of /proc/cpuinfo (Linux; "Features" on arm64); empty when neither is readable."""
    probe = getattr(torch.cpu, "get_capabilities", None)
    if probe is not None:
        return frozenset(name for name, value in probe().items() if value is True)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """The GPU's compute capability (major, minor): 8.0 (A100) and later run bf16 natively."""
    return torch.cuda.get_device_capability(device)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bf16 in hardware, and the evidence (or what is missing)."""
    if device.type == "cuda":
        major, minor = cuda_capability(device)
        return (major, minor) >= (8, 0), f"compute capability {major}.{minor}"
    if device.type == "cpu":
        found = sorted(cpu_flags() & set(NATIVE_BF16_CPU_FLAGS))
        if found:
            return True, f"CPU flags {', '.join(found)}"
        return False, f"CPU flags without any of {', '.join(NATIVE_BF16_CPU_FLAGS)}"
    return False, f"device type {device.type}"


def resolve_precision(requested: str, device: torch.device) -> str:
    """What `precision` ("auto", "fp32", "bf16" or "fp16") means on `device`: fp32, bf16 or fp16.

    auto: bf16 where the hardware runs it natively (a CPU with AMX or AVX512-BF16, a GPU of
    compute capability >= 8.0), fp16 on older CUDA GPUs (the trainer adds a gradient scaler),
    else fp32. An explicit bf16 is honoured everywhere, with one warning per process and device
    type where it is not native; fp16 on a CPU is refused.
    """
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {requested!r}")
    if requested == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs a GPU (got device cpu); use auto, fp32 or bf16")
    if requested in ("fp32", "fp16"):
        return requested
    native, evidence = native_bf16(device)
    if requested == "auto":
        if native:
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if requested == "bf16" and not native and device.type not in _WARNED:
        _WARNED.add(device.type)
        _log.warning(
            "precision bf16 on %s without native bf16 (%s): its bf16 matmuls and convolutions "
            "run as emulation or reference kernels, many times slower than fp32. Running bf16 "
            "as asked; precision auto or fp32 trains at full speed.",
            device.type,
            evidence,
        )
    return requested


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast for the device, or a no-op for fp32 (`precision` as resolve_precision
    takes it: auto resolves here the same way it does for the trainer)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
