"""The driver of a training run: checks the config against the store before Ray starts, opens
the MLflow run, builds a `TorchTrainer` over the store's train and dev splits and, when it
returns, evaluates the best checkpoint (by the smoothed selection metric) on the test split once
and logs the model, also when early stopping ended the run before `optim.epochs`. A Tune trial
calls the same driver.

A store without one modality (its manifest gives that modality dim 0) trains a model without
that branch and without a fusion head. When the recipe's `train.selection_metric` names a
condition the dev split has no rows of (dev/av/... on an audio-only store), the run selects on
the same metric of the condition it has, says so on the console and in the tag
`vavl.selection_fallback`; a selection metric the user set explicitly is never replaced."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vavl import console, plots, storage, tracking
from vavl.builders import build_batch_spec
from vavl.checkpoint import load_checkpoint, restore_model
from vavl.cluster import ResourceRequest, describe, release_requests, wait_for_resources
from vavl.config import (
    CONDITIONS,
    MEAN_OF_CONDITIONS,
    ConfigError,
    ExperimentConfig,
    TrainConfig,
    validate_config,
)
from vavl.evaluate import predict_split, split_metrics
from vavl.runtime import ensure_ray
from vavl.schedule import batches_per_epoch
from vavl.store import FeatureStore
from vavl.store.cache import fits_in_memory
from vavl.train.worker import DEV, TRAIN, FaultPlan, LoopContext, train_loop_per_worker

TEST = "test"
DATA_RESERVE_CPUS = 1.0  # Ray Data's ListFiles task requests a whole CPU (Ray 2.60)


@dataclass
class TrainResult:
    run_name: str
    run_id: str | None
    tracking_uri: str
    storage_path: str
    best_epoch: int | None
    best_score: float | None
    dev: dict[str, float]  # dev metrics of the best epoch
    test: dict[str, float]  # test metrics of the best checkpoint ({} when not evaluated)
    checkpoint: str | None  # path or URI of the best checkpoint
    model_uri: str | None
    history: list[dict[str, float]]
    stopped_early_at: int | None = None  # the last epoch when early stopping ended the run
    selection_metric: str = ""  # the one the run selected on (see `selection_metric_for`)


def selection_metric_for(
    cfg: ExperimentConfig, store: FeatureStore, *, explicit: bool = False
) -> tuple[str, str | None]:
    """The selection metric a run of `cfg` on `store` uses, and a note when it is not the
    recipe's: a condition the dev split has no rows of is replaced by the first (av, audio,
    visual) it has, with the same metric, unless the user chose it `explicit`ly (then it is an
    error, as is a dev split with no rows at all)."""
    metric = cfg.train.selection_metric
    _, condition, name = metric.split("/")
    present = [c for c in CONDITIONS if store.count(DEV, c) > 0]
    if condition == MEAN_OF_CONDITIONS and present:
        return metric, None
    if condition in CONDITIONS and store.count(DEV, condition) > 0:
        return metric, None
    if explicit or not present:
        has = f"; it has {', '.join(present)} rows" if present else ""
        raise ConfigError(
            f"train.selection_metric={metric!r} needs {condition!r} rows in the dev split of "
            f"{store.uri}, which has none{has}"
        )
    chosen = f"dev/{present[0]}/{name}"
    note = (
        f"train.selection_metric={metric} names {condition!r}, which the dev split of "
        f"{store.uri} has no rows of: selecting on {chosen} instead (set "
        "train.selection_metric on the command line to choose another)"
    )
    return chosen, note


def bind_store(
    cfg: ExperimentConfig, store: FeatureStore, *, explicit_selection: bool = False
) -> ExperimentConfig:
    """The config with the store's feature dims (0 for a modality the store has none of) and a
    selection metric its dev split has (`selection_metric_for`), after checking that the task
    matches the store."""
    if store.task_kind != cfg.task.kind:
        raise ConfigError(
            f"task.kind={cfg.task.kind!r} but store {store.uri} holds {store.task_kind!r} labels"
        )
    if cfg.task.kind == "categorical" and list(cfg.task.classes) != store.class_names:
        raise ConfigError(
            f"task.classes={cfg.task.classes} differ from the store's classes {store.class_names}"
        )
    if cfg.task.kind == "attributes" and list(cfg.task.attributes) != store.attribute_names:
        raise ConfigError(
            f"task.attributes={cfg.task.attributes} differ from the store's {store.attribute_names}"
        )
    if not (store.audio_dim or store.visual_dim):
        raise ConfigError(f"store {store.uri} has neither audio nor visual frames (both dims 0)")
    metric, _ = selection_metric_for(cfg, store, explicit=explicit_selection)
    tree = cfg.model_dump(mode="json")
    tree["model"].update(audio_dim=store.audio_dim, visual_dim=store.visual_dim)
    tree["train"]["selection_metric"] = metric
    tree["data"]["store"] = storage.absolute(store.uri)  # the workers open it too
    return validate_config(tree, source=f"config bound to {store.uri}")


def fit(
    cfg: ExperimentConfig,
    *,
    run_name: str | None = None,
    resume: bool = False,
    parent_run_id: str | None = None,
    evaluate_test: bool = True,
    log_model: bool = True,
    show_progress: bool = True,
    fault: FaultPlan | None = None,
    in_tune: bool = False,
    tracking_uri: str | None = None,
    explicit_selection: bool = False,
) -> TrainResult:
    """Train `cfg` with Ray Train DDP and record it in MLflow; see the module docstring.
    `explicit_selection`: the user set train.selection_metric, which is then never replaced."""
    store = FeatureStore.open(cfg.data.store)
    bound = bind_store(cfg, store, explicit_selection=explicit_selection)
    _, selection_note = selection_metric_for(cfg, store, explicit=explicit_selection)
    cfg = bound
    if selection_note:
        print(f"note: {selection_note}")
    if resume and not run_name:
        raise ConfigError("resuming needs the name of the run to continue")
    if store.count(TRAIN) < cfg.train.workers:
        raise ConfigError(
            f"train.workers={cfg.train.workers} but the train split of {store.uri} has "
            f"{store.count(TRAIN)} rows: every worker needs at least one"
        )
    ensure_ray()
    if not in_tune:
        check_cluster_fits(cfg)
    run_name = run_name or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    uri = tracking_uri or tracking.tracking_uri()
    run_id = _mlflow_run(cfg, store, run_name, resume, parent_run_id, uri, selection_note)
    progress = _progress_queue() if show_progress else None
    ctx = LoopContext(
        config=cfg.model_dump(mode="json"),
        spec=build_batch_spec(cfg, store),
        run_id=run_id,
        tracking_uri=uri,
        manifest_id=store.manifest_id,
        batches_per_epoch=batches_per_epoch(
            store.count(TRAIN), cfg.train.workers, cfg.optim.batch_size
        ),
        cache_train=fits_in_memory(
            store, TRAIN, parts=cfg.train.workers, budget_mb=cfg.data.cache_mb
        ),
        cache_dev=fits_in_memory(store, DEV, parts=1, budget_mb=cfg.data.cache_mb),
        progress=progress,
        fault=fault,
    )
    trainer = _trainer(cfg, store, ctx, run_name, in_tune)
    try:
        with tracking.recorded_warnings(run_id, uri=uri):
            with _printing(progress, cfg):
                result = trainer.fit()
            outcome = _finish(cfg, store, result, run_name, run_id, uri, evaluate_test, log_model)
    except BaseException:
        tracking.end_run(run_id, "FAILED", uri=uri)
        raise
    finally:
        if not in_tune:
            release_requests()
    tracking.end_run(run_id, "FINISHED", uri=uri)
    return outcome


def training_request(cfg: ExperimentConfig) -> ResourceRequest:
    """The workers' resources and a whole CPU for Ray Data, whose file-listing task asks for
    one and would otherwise wait forever behind the workers."""
    train = cfg.train
    worker = {
        "CPU": train.cpus_per_worker,
        **({"GPU": train.gpus_per_worker} if train.gpus_per_worker else {}),
    }
    totals = {name: amount * train.workers for name, amount in worker.items()}
    totals["CPU"] += DATA_RESERVE_CPUS
    return ResourceRequest(
        totals=totals,
        bundles=[dict(worker)] * train.workers + [{"CPU": DATA_RESERVE_CPUS}],
        purpose=f"train.workers={train.workers} x ({describe(worker)}) and Ray Data",
    )


def check_cluster_fits(cfg: ExperimentConfig) -> None:
    """Wait until the cluster can hold the run (`vavl.cluster`): fail then, not hang later."""
    wait_for_resources(training_request(cfg), cfg.train.resource_timeout_s)


def _run_tags(cfg: ExperimentConfig, selection_note: str | None) -> dict[str, str]:
    """What the run's model answers (`vavl.conditions`, e.g. "audio" for an audio-only store)
    and, when the recipe's selection metric was replaced, why."""
    tags = {"vavl.conditions": ",".join(cfg.model.conditions)}
    if selection_note:
        tags["vavl.selection_fallback"] = selection_note
    return tags


def _mlflow_run(cfg, store, run_name, resume, parent_run_id, uri, selection_note) -> str:
    if resume:
        found = tracking.find_run(cfg.train.experiment, run_name, uri=uri)
        if found is None:
            raise ConfigError(f"no MLflow run named {run_name!r} in {cfg.train.experiment!r}")
        tags = {"vavl.resumed": "true", **_run_tags(cfg, selection_note)}
        tracking.set_tags(found, tags, uri=uri)
        return found
    counts = {
        f"data.n_{split}_{condition}": store.count(split, condition)
        for split in store.splits()
        for condition in ("av", "audio", "visual")
    }
    run_id = tracking.start_run(
        cfg.train.experiment,
        run_name,
        params={**cfg.flat_params(), **counts, "data.manifest_id": store.manifest_id},
        tags={"vavl.run_name": run_name, "vavl.store": store.uri, **_run_tags(cfg, selection_note)},
        parent_run_id=parent_run_id,
        uri=uri,
    )
    tracking.record_training_run(run_id, cfg.name, store, parent_run_id, uri=uri)
    tracking.log_text(run_id, cfg.to_yaml(), "config.yaml", uri=uri)
    tracking.log_text(run_id, json.dumps(store.manifest, indent=2), "manifest.json", uri=uri)
    return run_id


def _trainer(cfg: ExperimentConfig, store: FeatureStore, ctx: LoopContext, name, in_tune):
    import ray.train
    from ray.train.torch import TorchTrainer

    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    filesystem, storage_path = storage.resolve(cfg.train.storage_path)
    gpus = cfg.train.gpus_per_worker
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"ctx": ctx},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.workers, use_gpu=gpus > 0, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.train.checkpoints_to_keep,
                checkpoint_score_attribute=cfg.train.selection_key,
                checkpoint_score_order=cfg.train.selection_mode,
            ),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            callbacks=callbacks,
        ),
        # Each rank reads its own share of the train split (`vavl.store.partition`), not a
        # streaming split, whose rows go to whichever rank asks first; rank 0 reads all of dev.
        datasets={DEV: store.dataset(DEV)},
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
    )


def best_checkpoint(result: Any, train: TrainConfig) -> tuple[Any, dict[str, Any]] | None:
    """The kept checkpoint with the best smoothed selection score, with its reported metrics.

    Ties go to the earliest epoch, as in the training loop (only a strict improvement replaces
    the best, and patience counts from it). Ray's `get_best_checkpoint` and its `num_to_keep`
    eviction favour later checkpoints on ties, so they are not used: when Ray evicted an earlier
    tied epoch, this is the earliest kept one with the same score. A NaN score ranks last."""
    key, sign = train.selection_key, 1.0 if train.selection_mode == "max" else -1.0
    scored = [(c, m) for c, m in result.best_checkpoints or [] if m.get(key) is not None]
    if not scored:
        return None

    def rank(item: tuple[Any, dict[str, Any]]) -> tuple[float, float]:
        score = float(item[1][key])
        return (-math.inf if math.isnan(score) else sign * score, -float(item[1]["epoch"]))

    return max(scored, key=rank)


def _finish(cfg, store, result, run_name, run_id, uri, evaluate_test, log_model) -> TrainResult:
    if result.error is not None:
        raise result.error
    found = best_checkpoint(result, cfg.train)
    if found is None:
        raise RuntimeError(f"run {run_name} reported no checkpoint")
    best, reported = found
    best_epoch = int(reported["epoch"])  # state.best_epoch unless Ray evicted a tie (above)
    with best.as_directory() as directory:
        model, _, _ = restore_model(directory)
    with result.checkpoint.as_directory() as directory:
        state = load_checkpoint(directory).state  # the latest: the whole history, the best so far
    dev = next((h for h in state.history if h["epoch"] == best_epoch), state.history[-1])
    test: dict[str, float] = {}
    if evaluate_test:
        predictions = predict_split(model, cfg, store, TEST)
        test = split_metrics(predictions, cfg.task, TEST)
        tracking.log_metrics(run_id, test, step=best_epoch, uri=uri)
        for name, figure in plots.prediction_figures(predictions, cfg.task, TEST).items():
            tracking.log_figure(run_id, figure, f"plots/{name}", uri=uri)
    tracking.log_metrics(run_id, {"best/epoch": float(best_epoch)}, step=0, uri=uri)
    if state.stopped_early_at is not None:
        tags = {"vavl.stopped_early_at_epoch": str(state.stopped_early_at)}
        tracking.set_tags(run_id, tags, uri=uri)
    tracking.log_figure(
        run_id,
        plots.learning_curves_figure(state.history, cfg.train.selection_metric),
        "learning_curves.png",
        uri=uri,
    )
    model_uri = None
    if log_model:
        model_uri = tracking.log_model(
            run_id,
            model.eval(),
            cfg,
            store.manifest.get("normalization"),
            registered_name=cfg.train.register_model,
            uri=uri,
        )
    return TrainResult(
        run_name=run_name,
        run_id=run_id,
        tracking_uri=uri,
        storage_path=result.path,
        best_epoch=best_epoch,
        best_score=float(reported[cfg.train.selection_key]),
        dev={k: v for k, v in dev.items() if k.startswith("dev/")},
        test=test,
        checkpoint=best.path,
        model_uri=model_uri,
        history=state.history,
        stopped_early_at=state.stopped_early_at,
        selection_metric=cfg.train.selection_metric,
    )


def _progress_queue():
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})


@contextlib.contextmanager
def _printing(progress, cfg: ExperimentConfig) -> Iterator[None]:
    """Print rank 0's epoch summaries and notes while the trainer runs (worker stdout is not
    forwarded)."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    printer = console.ProgressPrinter(
        sys.stdout,
        epochs=cfg.optim.epochs,
        selection_metric=cfg.train.selection_metric,
        every_s=cfg.train.progress_every_s,
    )

    def pump() -> None:
        from ray.util.queue import Empty

        while not (stop.is_set() and progress.empty()):
            try:
                item = progress.get(timeout=0.5)
            except Empty:
                continue
            printer.show(item)
        printer.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
