"""The function every Ray Train worker runs: resume, then per epoch train on this rank's shard,
evaluate the dev split on rank 0, decide there on the best epoch, the plateau lr and early
stopping (then share that with every rank), log to MLflow and report a checkpoint."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vavl import storage, tracking
from vavl.averaging import weight_average
from vavl.builders import build_model, build_optimizer
from vavl.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from vavl.config import validate_config
from vavl.evaluate import predict, split_metrics
from vavl.objectives import TaskObjective
from vavl.phases import unwrap
from vavl.runtime import native_bf16, resolve_precision, seed_everything
from vavl.schedule import (
    LrSchedule,
    accumulation_groups,
    is_better,
    plateau_update,
    should_stop,
    smoothed,
)
from vavl.store import BatchSpec, FeatureStore, StoreError
from vavl.store.cache import SplitCache
from vavl.store.partition import rank_rows
from vavl.train.step import StepSettings, backward_pass, optimizer_step

TRAIN, DEV = "train", "dev"
# 1.0 in the report (to Ray and Tune, not MLflow) of the epoch that early stopping ends a run on.
STOPPED_EARLY = "stopped_early"


@dataclass(frozen=True)
class FaultPlan:
    """Kill one worker process once, after `at_step` optimizer steps (tests of recovery)."""

    at_step: int
    marker: str  # a local file created when the fault fires, so it fires only once
    rank: int = 0
    # Ray Train's controller learns of a reported checkpoint when it next polls the workers (every
    # 2 s by default): a worker that dies sooner after a report resumes from the one before. Tests
    # that expect a given checkpoint wait this long before the kill.
    settle_s: float = 0.0


@dataclass
class LoopContext:
    """What every rank needs, sent through `train_loop_config`."""

    config: dict[str, Any]
    spec: BatchSpec
    run_id: str | None
    tracking_uri: str
    manifest_id: str
    # Each rank's batches per epoch (vavl.schedule, from the manifest): the lr schedule needs the
    # run's length before the first epoch has read any data.
    batches_per_epoch: int
    cache_train: bool = False  # keep this rank's train rows in memory after the first epoch
    cache_dev: bool = False
    progress: Any = None  # a ray.util.queue.Queue for the driver's epoch lines, or None
    fault: FaultPlan | None = None
    extra_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: one per `optim.accumulate_batches` batches."""
        accumulate = self.config["optim"]["accumulate_batches"]
        return len(accumulation_groups(self.batches_per_epoch, accumulate))


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Runs on every rank: resume, then per epoch train, evaluate dev on rank 0, report."""
    import ray.train
    import ray.train.torch

    ctx: LoopContext = loop_config["ctx"]
    cfg = validate_config(ctx.config)
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    precision = resolve_precision(cfg.train.precision, device)  # auto: what this device runs
    torch.set_num_threads(worker_threads(cfg.train.threads_per_worker))
    if rank == 0:
        _record_precision(ctx, cfg.train.precision, precision, device)
    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    model = ray.train.torch.prepare_model(
        build_model(cfg), parallel_strategy_kwargs={"find_unused_parameters": False}
    )
    optimizer = build_optimizer(cfg, model)
    use_scaler = precision == "fp16" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    averaged = weight_average(unwrap(model), cfg.optim.ema_epochs, ctx.steps_per_epoch)
    state = _resume(model, optimizer, scaler, averaged, ctx.tracking_uri)
    if state.history:
        # A resumed run tells Ray (and Tune, which may hold a stale result) where it stands.
        ray.train.report(state.history[-1] if rank == 0 else {"epoch": float(state.epoch)})
    objective = TaskObjective.from_config(cfg.task)
    schedule = LrSchedule.from_config(cfg.optim, ctx.steps_per_epoch)
    train_data = _train_share(cfg, ctx, rank)
    dev_data = SplitCache(ray.train.get_dataset_shard(DEV), ctx.spec, keep=ctx.cache_dev)

    for epoch in range(state.epoch + 1, cfg.optim.epochs + 1):
        if state.stopped_early_at is not None:  # also when resumed from the stopping epoch
            break
        started = time.perf_counter()
        seed_everything(cfg.train.seed * 1_000_003 + epoch * 1009 + rank)
        train_logs = _train_epoch(
            model,
            optimizer,
            scaler,
            averaged,
            train_data,
            ctx,
            cfg,
            state,
            epoch,
            schedule,
            precision,
        )
        metrics = {**_mean_across_ranks(train_logs), "epoch": float(epoch)}
        metrics["train/rank_weight_spread"] = _weight_spread_across_ranks(model)
        state.epoch = epoch
        if rank == 0:
            # Only rank 0 evaluates dev, on the whole split: Ray's equal sharding would drop rows.
            preds = predict(
                evaluated(model, averaged),
                dev_data.batches(batch_size=cfg.optim.batch_size),
                objective,
                device=device,
                precision=precision,
            )
            metrics.update(split_metrics(preds, cfg.task, DEV))
            metrics["time/epoch_s"] = time.perf_counter() - started
            _require_metric(metrics, cfg.train.selection_metric)
            _select(state, metrics, cfg)
        _share_decision(state, device)
        _report_epoch(model, optimizer, scaler, averaged, state, metrics, ctx, cfg, rank)


def worker_threads(requested: int | None) -> int:
    """`train.threads_per_worker`, or this node's cores shared among the run's workers on it."""
    import ray.train

    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // ray.train.get_context().get_local_world_size())


def _record_precision(ctx: LoopContext, requested: str, used: str, device: torch.device) -> None:
    """Rank 0: the precision this run computes in, as the run's tag `vavl.precision` (a tag, not
    a param: a run resumed on other hardware may use another) and a line on the driver's
    console, which shows nothing else the workers log."""
    if ctx.run_id:
        tracking.set_tags(ctx.run_id, {"vavl.precision": used}, uri=ctx.tracking_uri)
    if ctx.progress is not None:
        native, evidence = native_bf16(device)
        slow = used == "bf16" and not native
        why = f"{evidence}: many times slower than fp32" if slow else evidence
        ctx.progress.put({"note": f"precision {used} (train.precision={requested}; {why})"})


def _train_share(cfg, ctx: LoopContext, rank: int) -> SplitCache:
    """This rank's train rows (`vavl.store.partition`): read by Ray Data from the store the
    driver opened, reshuffled per epoch from the epoch's seed alone."""
    import ray.train

    store = FeatureStore.open(cfg.data.store)
    if store.manifest_id != ctx.manifest_id:
        raise StoreError(
            f"store {storage.redact(cfg.data.store)} changed since the run started (manifest "
            f"{store.manifest_id}, run {ctx.manifest_id}): it was ingested again"
        )
    world = ray.train.get_context().get_world_size()
    share = rank_rows(store.count(TRAIN), world, rank)
    return SplitCache(
        lambda seed: store.dataset(TRAIN, rows=share, slice_seed=seed),
        ctx.spec,
        keep=ctx.cache_train,
        bucket_batches=cfg.data.bucket_batches,
    )


def evaluated(model, averaged) -> torch.nn.Module:
    """The weights that are evaluated, selected and logged: the average where there is one."""
    return averaged.module if averaged is not None else unwrap(model)


def _resume(model, optimizer, scaler, averaged, uri: str) -> TrainingState:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return TrainingState()
    with checkpoint.as_directory() as directory:
        loaded = load_checkpoint(directory)
    unwrap(model).load_state_dict(loaded.model)
    run_id = loaded.meta.get("mlflow_run_id")
    if run_id and ray.train.get_context().get_world_rank() == 0:
        tracking.set_tags(run_id, {"vavl.resumed_from_epoch": str(loaded.state.epoch)}, uri=uri)
    optimizer.load_state_dict(loaded.optimizer)
    if scaler is not None and loaded.scaler is not None:
        scaler.load_state_dict(loaded.scaler)
    if averaged is not None and loaded.averaged is not None:
        averaged.load_state_dict(loaded.averaged)
    return loaded.state


def _train_epoch(
    model,
    optimizer,
    scaler,
    averaged,
    data: SplitCache,
    ctx: LoopContext,
    cfg,
    state,
    epoch,
    schedule: LrSchedule,
    precision: str,
) -> dict[str, float]:
    model.train()
    device = next(model.parameters()).device
    objective = TaskObjective.from_config(cfg.task)
    settings = StepSettings(precision, cfg.loss.reconstruction_weight, cfg.optim.grad_clip)
    sums: dict[str, float] = defaultdict(float)
    batches = 0
    waited = 0.0
    real_frames = padded_frames = 0
    lr = _scheduled_lr(schedule, state, cfg.optim.lr)
    started = time.perf_counter()
    ticker = _StepTicker.for_run(ctx, cfg, started)
    stream = iter(
        data.batches(
            batch_size=cfg.optim.batch_size, shuffle=True, seed=cfg.train.seed * 7919 + epoch
        )
    )
    groups = iter(accumulation_groups(ctx.batches_per_epoch, cfg.optim.accumulate_batches))
    group = in_group = 0  # batches of the current optimizer step, and how many have run

    def step() -> None:
        optimizer_step(model, optimizer, scaler, settings.grad_clip)
        if averaged is not None:
            averaged.update_parameters(unwrap(model))
        state.step += 1
        _maybe_inject_fault(ctx.fault, state.step)

    while True:
        ask = time.perf_counter()
        batch = next(stream, None)
        waited += time.perf_counter() - ask
        if batch is None:
            break
        real_frames += int(batch.audio_mask.sum()) + int(batch.visual_mask.sum())
        padded_frames += int(batch.has_audio.sum()) * batch.audio_mask.shape[1]
        padded_frames += int(batch.has_visual.sum()) * batch.visual_mask.shape[1]
        batch = batch.to(device, non_blocking=True)
        if in_group == 0:
            group = next(groups, 1)
            lr = _scheduled_lr(schedule, state, cfg.optim.lr)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
        in_group += 1
        # DDP all-reduces the gradients on the backward of the step's last batch only.
        sync = in_group == group or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            losses = backward_pass(model, scaler, batch, objective, settings, 1.0 / group)
        if in_group == group:
            step()
            in_group = 0
        for key, value in losses.logs.items():
            sums[key] += value
        batches += 1
        ticker.tick(epoch, batches, sums["train/loss"] / batches)
    if in_group:  # fewer batches than the manifest predicted: their gradients still count
        step()
    logs = {key: value / max(batches, 1) for key, value in sums.items()}
    elapsed = time.perf_counter() - started
    logs["train/data_wait_share"] = waited / elapsed if elapsed > 0 else 0.0
    # Of the frames each branch computes (its rows, padded to the batch's longest), the padding.
    logs["train/padding_share"] = 1.0 - real_frames / padded_frames if padded_frames else 0.0
    logs["train/samples_per_s"] = batches * cfg.optim.batch_size / elapsed if elapsed else 0.0
    logs["train/peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    logs["train/lr"] = lr  # of the epoch's last step
    return logs


@dataclass
class _StepTicker:
    """Rank 0's progress inside an epoch, sent to the driver at most every `interval_s` seconds
    (the driver decides what to print: `vavl.console.ProgressPrinter`)."""

    TICK_S = 1.0
    queue: Any
    interval_s: float  # TICK_S, or less where the printer wants plain lines more often
    steps: int
    batch_size: int
    started: float
    last: float

    @classmethod
    def for_run(cls, ctx: LoopContext, cfg, started: float) -> _StepTicker:
        import ray.train

        wanted = ctx.progress is not None and cfg.train.progress_every_s is not None
        is_rank_0 = ray.train.get_context().get_world_rank() == 0
        queue = ctx.progress if wanted and is_rank_0 else None
        every = cfg.train.progress_every_s
        interval = cls.TICK_S if every is None else min(cls.TICK_S, every)
        return cls(queue, interval, ctx.batches_per_epoch, cfg.optim.batch_size, started, started)

    def tick(self, epoch: int, done: int, loss: float) -> None:
        now = time.perf_counter()
        if self.queue is None or now - self.last < self.interval_s:
            return
        self.last = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        update = {
            "epoch": epoch,
            "step": done,
            "steps": self.steps,
            "loss": loss,
            "samples_per_s": rate * self.batch_size,
            "eta_s": max(self.steps - done, 0) / rate if rate > 0 else 0.0,
        }
        self.queue.put_nowait(update)


def _scheduled_lr(schedule: LrSchedule, state, base_lr: float) -> float:
    """The lr of the next optimizer step: from the step counter and the plateau scale alone,
    both in the checkpoint, so a resumed run goes on with the lr it would have had."""
    return base_lr * schedule.multiplier(state.step + 1) * state.lr_scale


def _maybe_inject_fault(fault: FaultPlan | None, step: int) -> None:
    import ray.train

    if fault is None or step != fault.at_step or Path(fault.marker).exists():
        return
    if ray.train.get_context().get_world_rank() != fault.rank:
        return
    time.sleep(fault.settle_s)
    Path(fault.marker).write_text(f"killed at step {step}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def _mean_across_ranks(logs: dict[str, float]) -> dict[str, float]:
    """Average each rank's epoch means (Ray keeps only rank 0's report)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return logs
    gathered: list[dict[str, float] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, logs)
    keys = sorted({key for part in gathered if part for key in part})
    return {
        key: sum(part[key] for part in gathered if part and key in part)
        / sum(1 for part in gathered if part and key in part)
        for key in keys
    }


def _weight_spread_across_ranks(model: torch.nn.Module) -> float:
    """Largest difference between ranks' weight checksums: 0 while DDP keeps replicas in step."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 0.0
    gathered = [torch.zeros_like(checksum) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, checksum)
    values = torch.stack(gathered)
    return float(values.max() - values.min())


def _require_metric(metrics: dict[str, float], name: str) -> None:
    if name not in metrics:
        available = ", ".join(sorted(k for k in metrics if k.startswith("dev/")))
        raise KeyError(f"selection metric {name!r} was not computed; dev metrics: {available}")


def _select(state: TrainingState, metrics: dict[str, float], cfg) -> None:
    """Rank 0 at an epoch's end: the smoothed selection score (added to `metrics`), the best
    epoch, the plateau schedule's lr scale and whether to stop early, all in `state`."""
    train = cfg.train
    raw = [h[train.selection_metric] for h in state.history] + [metrics[train.selection_metric]]
    score = smoothed(raw, train.selection_smoothing)
    metrics[train.selection_key] = score
    improved = is_better(score, state.best_score, train.selection_mode)
    if improved:
        state.best_score, state.best_epoch = score, state.epoch
    if cfg.optim.schedule == "plateau":
        state.lr_scale, state.plateau_wait = plateau_update(
            state.lr_scale,
            state.plateau_wait,
            improved=improved,
            patience=cfg.optim.plateau_patience,
            floor=cfg.optim.min_lr_ratio,
        )
    last = state.epoch >= cfg.optim.epochs
    if not last and should_stop(state.epoch, state.best_epoch, train.patience):
        state.stopped_early_at = state.epoch


def _share_decision(state: TrainingState, device: torch.device) -> None:
    """Give every rank rank 0's lr scale and stop decision: DDP replicas stay identical only with
    the same lr, and a rank that left the loop alone would leave the others waiting on it."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    stopped = -1.0 if state.stopped_early_at is None else float(state.stopped_early_at)
    values = torch.tensor([stopped, state.lr_scale], dtype=torch.float64, device=device)
    torch.distributed.broadcast(values, src=0)
    state.stopped_early_at = None if values[0] < 0 else int(values[0])
    state.lr_scale = float(values[1])


def _report_epoch(
    model, optimizer, scaler, averaged, state, metrics, ctx: LoopContext, cfg, rank
) -> None:
    """Rank 0 saves the checkpoint and logs to MLflow; every rank calls ray.train.report."""
    import ray.train

    if rank != 0:
        ray.train.report({"epoch": metrics["epoch"]})
        return
    state.history.append(dict(metrics))
    if ctx.run_id:
        tracking.log_metrics(ctx.run_id, metrics, step=state.epoch, uri=ctx.tracking_uri)
    if ctx.progress is not None:
        ctx.progress.put({**metrics, "best_epoch": state.best_epoch, "step": state.step})
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(
            directory,
            model=unwrap(model),
            optimizer=optimizer,
            scaler=scaler,
            averaged=averaged,
            state=state,
            config=validate_config(ctx.config),
            meta={"manifest_id": ctx.manifest_id, "mlflow_run_id": ctx.run_id},
        )
        stopped = {STOPPED_EARLY: float(state.stopped_early_at is not None)}
        ray.train.report(
            {**metrics, **ctx.extra_metrics, **stopped},
            checkpoint=ray.train.Checkpoint.from_directory(directory),
        )
