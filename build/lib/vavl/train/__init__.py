"""Ray Train: one worker function (`worker.train_loop_per_worker`) and one driver (`driver.fit`)."""

from vavl.train.driver import (
    DATA_RESERVE_CPUS,
    TrainResult,
    best_checkpoint,
    bind_store,
    check_cluster_fits,
    fit,
)
from vavl.train.worker import FaultPlan, LoopContext, train_loop_per_worker

__all__ = [
    "DATA_RESERVE_CPUS",
    "FaultPlan",
    "LoopContext",
    "TrainResult",
    "best_checkpoint",
    "bind_store",
    "check_cluster_fits",
    "fit",
    "train_loop_per_worker",
]
