"""Process-level set-up shared by every entry point: quiet Ray, devices, mixed precision, seeds."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

# Set before Ray starts so that every worker process inherits them.
QUIET_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "1",
    "TUNE_GLOBAL_CHECKPOINT_S": "0",
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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast for the device, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("train.precision=fp16 needs a GPU; use bf16 on CPU")
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
