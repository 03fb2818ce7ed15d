"""Ray Tune sweeps over any config fields: Optuna's TPE proposes, ASHA stops poor trials early,
and every trial is a real Ray Train DDP run through the same driver as plain training.

MLflow gets one parent run per sweep and one nested child run per trial, with the same param and
metric names as a training run. Tune, ASHA and the choice of the best trial and of its checkpoint
all use the smoothed selection metric (`train.selection_key`), as a training run's checkpoint
choice and early stopping do. After the sweep the best trial (development split only) is
evaluated once on the test split, and its config is written as a ready recipe.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml

from vavl import plots, storage, tracking
from vavl.checkpoint import restore_model
from vavl.cluster import ResourceRequest, release_requests, wait_for_resources
from vavl.config import ConfigError, ExperimentConfig, apply_overrides, validate_config
from vavl.evaluate import predict_split, split_metrics
from vavl.runtime import ensure_ray
from vavl.search_space import SearchSpace, describe, recipe_point
from vavl.store import FeatureStore
from vavl.train import DATA_RESERVE_CPUS, best_checkpoint, bind_store, fit
from vavl.train.worker import STOPPED_EARLY

TUNE_STATE_FILES = "experiment_state-*.json"  # one per driver session, in the sweep's folder

# Where a trial's driver finds the store and MLflow, copied from the sweep's driver: on a local
# cluster Tune's worker processes may predate them. Never credentials: the context travels
# pickled (`vavl.storage` says where credentials come from).
FORWARDED_ENV = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)
# The registry alias of a sweep's best model (with train.register_model set).
CHAMPION = "champion"
TRIAL_DRIVER_CPUS = 0.1  # the trial function only waits on its TorchTrainer


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs; handed to trials through `tune.with_parameters`."""

    name: str
    base: dict[str, Any]  # the bound experiment config, as a tree
    parent_run_id: str
    tracking_uri: str
    env: dict[str, str] = field(default_factory=dict)  # storage settings the trial driver needs


@dataclass
class TrialRow:
    trial_id: str
    run_name: str
    params: dict[str, Any]
    score: float | None
    epochs: int
    state: str  # finished | converged (early stopping on patience) | stopped early (ASHA) | failed


@dataclass
class SweepResult:
    name: str
    parent_run_id: str
    tracking_uri: str
    trials: list[TrialRow]
    best: TrialRow
    best_config: ExperimentConfig
    best_config_path: Path
    best_checkpoint: str
    test: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None  # the best model, logged to the parent run


def trial_config(base: dict[str, Any], params: dict[str, Any]) -> ExperimentConfig:
    overrides = [f"{path}={value}" for path, value in params.items()]
    tree = apply_overrides(yaml.safe_load(yaml.safe_dump(base)), overrides)
    return validate_config(tree, source="trial config")


def run_trial(params: dict[str, Any], sweep: SweepContext) -> None:
    """One Tune trial: a full training run, nested under the sweep's MLflow parent run.

    A trial restarted after the sweep's driver was killed continues its own Train run (same
    name) and its own MLflow child run instead of starting over."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    # Tune's trial processes may have started before the sweep's driver set these.
    os.environ.update(sweep.env)
    cfg = trial_config(sweep.base, params)
    run_name = f"{sweep.name}-{trial_id}"
    existing = tracking.find_run(cfg.train.experiment, run_name, uri=sweep.tracking_uri)
    fit(
        cfg,
        run_name=run_name,
        resume=existing is not None,
        parent_run_id=sweep.parent_run_id,
        evaluate_test=False,
        log_model=False,
        show_progress=False,
        in_tune=True,
        tracking_uri=sweep.tracking_uri,
    )


MIN_WORKER_CPUS = 0.05  # the smallest CPU share a training worker is given


def trial_cpus(cfg: ExperimentConfig, concurrent: int) -> float:
    """CPUs per training worker so that `concurrent` trials and Ray Data share the cluster.

    The cluster is first waited for (`vavl.cluster`) until it holds the smallest share that can
    work, while its autoscaler, if any, is asked for what the recipe wants (its
    train.cpus_per_worker for every worker); then the CPUs it has are divided."""
    workers = cfg.train.workers
    least = concurrent * (workers * MIN_WORKER_CPUS + TRIAL_DRIVER_CPUS) + DATA_RESERVE_CPUS
    wanted = [{"CPU": cfg.train.cpus_per_worker}] * (concurrent * workers)
    request = ResourceRequest(
        totals={"CPU": least},
        bundles=[*wanted, *[{"CPU": TRIAL_DRIVER_CPUS}] * concurrent, {"CPU": DATA_RESERVE_CPUS}],
        purpose=f"{concurrent} concurrent trials x {workers} workers (one CPU stays with Ray Data)",
    )
    total = wait_for_resources(request, cfg.train.resource_timeout_s)["CPU"]
    per_trial = (total - DATA_RESERVE_CPUS) / concurrent - TRIAL_DRIVER_CPUS
    steps = round(1 / MIN_WORKER_CPUS)  # CPU shares in whole multiples of MIN_WORKER_CPUS
    return math.floor(per_trial / workers * steps) / steps


def run_sweep(
    cfg: ExperimentConfig,
    space: SearchSpace,
    *,
    name: str,
    trials: int,
    concurrent: int,
    resume: bool = False,
    recipe_dir: Path | None = None,
) -> SweepResult:
    """Search `space` (dotted config paths) for the best dev selection metric."""
    from ray import tune

    store = FeatureStore.open(cfg.data.store)
    cfg = bind_store(cfg, store)
    if cfg.tune.grace_period > cfg.optim.epochs:
        raise ConfigError(
            f"tune.grace_period={cfg.tune.grace_period} exceeds optim.epochs={cfg.optim.epochs}: "
            "ASHA must let a trial run at least its grace period"
        )
    unknown = [path for path in space if path not in cfg.flat_params()]
    if unknown:
        raise ConfigError(f"search space names fields the config does not have: {unknown}")
    ensure_ray()
    cfg = trial_config(
        cfg.model_dump(mode="json"), {"train.cpus_per_worker": trial_cpus(cfg, concurrent)}
    )
    uri = tracking.tracking_uri()
    parent = _parent_run(cfg, store, space, name, trials, concurrent, resume, uri)
    env = {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}
    context = SweepContext(name, cfg.model_dump(mode="json"), parent, uri, env)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep=context), {"CPU": TRIAL_DRIVER_CPUS}
    )
    tuner = _tuner(
        cfg, space, trainable, name=name, trials=trials, concurrent=concurrent, resume=resume
    )
    try:
        grid = tuner.fit()
    finally:
        release_requests()
    rows = _trial_rows(grid, cfg, space, name)
    _close_child_runs(rows, cfg, uri)
    tuned = Path(recipe_dir if recipe_dir is not None else cfg.tune.recipe_dir)
    return _finish(cfg, store, space, rows, name, parent, uri, tuned)


def _parent_run(cfg, store, space, name, trials, concurrent, resume, uri) -> str:
    if resume:
        found = tracking.find_run(cfg.train.experiment, name, uri=uri)
        if found is not None:
            return found
    params = {
        **cfg.flat_params(),
        **describe(space),
        "sweep.trials": trials,
        "sweep.concurrent": concurrent,
        "sweep.sampler": f"optuna.TPESampler(seed={cfg.tune.sampler_seed})",
        "sweep.scheduler": (
            f"ASHA(time_attr=epoch, grace_period={cfg.tune.grace_period}, "
            f"reduction_factor={cfg.tune.reduction_factor}, max_t={cfg.optim.epochs})"
        ),
        "sweep.metric": f"{cfg.train.selection_key} ({cfg.train.selection_mode})",
    }
    parent = tracking.start_run(
        cfg.train.experiment,
        name,
        params=params,
        tags={"vavl.run_name": name, "vavl.kind": "sweep"},
        uri=uri,
    )
    tracking.log_store(parent, store.uri, store.manifest_id, uri=uri)
    searched = ", ".join(f"`{path}`" for path in space)
    tracking.describe(
        parent,
        f"Sweep `{name}` over {searched}: {trials} trials, {concurrent} at a time (Optuna TPE, "
        f"ASHA), recipe `{cfg.name}` on {tracking.store_words(store.uri, store.manifest_id)}.",
        uri=uri,
    )
    return parent


def saved_sweep_state(filesystem: pafs.FileSystem, path: str) -> str | None:
    """The newest experiment state Tune saved for the sweep at `path`, checked readable; None
    when it saved none. Tune itself, given a state it cannot read, starts an empty experiment
    in its place and logs why: a resumed sweep would silently start over."""
    states = [
        file
        for file in storage.list_files(filesystem, path, recursive=False)
        if fnmatch.fnmatch(file.rsplit("/", 1)[-1], TUNE_STATE_FILES)
    ]
    if not states:
        return None
    newest = max(states)  # Tune's own choice: the names end in the session's start time
    try:
        json.loads(storage.read_bytes(filesystem, newest))
    except ValueError as err:
        earlier = max(set(states) - {newest}, default=None)
        remedy = (
            f"move it aside to resume from the state before it ({earlier})"
            if earlier
            else "no earlier state exists: start the sweep again under a new --name "
            "(the finished trials stay in MLflow under this sweep's parent run)"
        )
        raise storage.StorageError(
            f"{newest}: the sweep's saved state cannot be read ({err}), "
            f"so the sweep cannot resume from it; {remedy}"
        ) from err
    return newest


def _tuner(cfg, space, trainable, *, name, trials, concurrent, resume):
    import optuna
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from vavl.sweep_console import TrialLines

    filesystem, root = storage.resolve(cfg.tune.storage_path, whole_files=True)
    path = f"{root}/{name}"
    exists = tune.Tuner.can_restore(path, storage_filesystem=filesystem)
    if exists and not resume:
        raise ConfigError(f"a sweep named {name!r} exists in {path}: pass --resume or a new --name")
    # A driver killed before Tune saved any state leaves nothing to resume: the sweep starts anew.
    if exists and saved_sweep_state(filesystem, path) is not None:
        return tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, storage_filesystem=filesystem
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # OptunaSearch uses API that Optuna marks experimental: a notice per use, nothing to act on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    start = recipe_point(space, cfg.model_dump(mode="json")) if cfg.tune.start_from_recipe else None
    searcher = OptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=cfg.tune.sampler_seed),
        points_to_evaluate=[start] if start else None,
    )
    return tune.Tuner(
        trainable,
        param_space={path: param.tune() for path, param in space.items()},
        tune_config=tune.TuneConfig(
            metric=cfg.train.selection_key,
            mode=cfg.train.selection_mode,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent),
            scheduler=ASHAScheduler(
                time_attr="epoch",
                max_t=cfg.optim.epochs,
                grace_period=cfg.tune.grace_period,
                reduction_factor=cfg.tune.reduction_factor,
                # A trial that reaches the last epoch ends on its own, so its driver closes its
                # MLflow run and Train run cleanly instead of being killed at max_t.
                stop_last_trials=False,
            ),
            num_samples=trials,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root,
            storage_filesystem=filesystem,
            verbose=0,  # Tune's status table every 30 s: one line per trial event instead
            # Tune's CSV and JSON results (ResultGrid reads them); not its TensorBoard files,
            # which nothing here reads (QUIET_ENV turns Tune's automatic loggers off).
            callbacks=[
                TrialLines(cfg.train.selection_key, cfg.optim.epochs),
                CSVLoggerCallback(),
                JsonLoggerCallback(),
            ],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def _trial_rows(grid, cfg: ExperimentConfig, space: SearchSpace, name: str) -> list[TrialRow]:
    rows = []
    metric, epochs = cfg.train.selection_key, cfg.optim.epochs
    for result in grid:
        history = result.metrics_dataframe
        scores = history[metric].dropna() if history is not None and metric in history else None
        best = None
        if scores is not None and len(scores):
            best = float(scores.max() if cfg.train.selection_mode == "max" else scores.min())
        done = int(result.metrics.get("epoch", 0)) if result.metrics else 0
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        state = _trial_state(result, done, epochs)
        rows.append(
            TrialRow(
                trial_id=trial_id,
                run_name=f"{name}-{trial_id}",
                params={path: result.config.get(path) for path in space},
                score=best,
                epochs=done,
                state=state,
            )
        )
    reverse = cfg.train.selection_mode == "max"
    missing = -math.inf if reverse else math.inf
    return sorted(rows, key=lambda r: missing if r.score is None else r.score, reverse=reverse)


def _trial_state(result, done: int, epochs: int) -> str:
    """A trial that ran short either converged (its own early stopping: `fit` finished it) or
    was stopped by ASHA."""
    if result.error:
        return "failed"
    if done >= epochs:
        return "finished"
    return "converged" if (result.metrics or {}).get(STOPPED_EARLY) else "stopped early"


def _close_child_runs(rows: list[TrialRow], cfg: ExperimentConfig, uri: str) -> None:
    """Trials that ASHA stopped never reach the end of `fit`: close their runs here."""
    status = {
        "finished": "FINISHED",
        "converged": "FINISHED",
        # Stopping by ASHA is a normal end: FINISHED (the compare view's default filter shows
        # it), with vavl.trial_state saying why it ended short.
        "stopped early": "FINISHED",
        "failed": "FAILED",
    }
    for row in rows:
        run_id = tracking.find_run(cfg.train.experiment, row.run_name, uri=uri)
        if run_id is None:
            continue
        tracking.set_tags(run_id, {"vavl.trial_state": row.state}, uri=uri)
        tracking.end_run(run_id, status[row.state], uri=uri)


def _finish(cfg, store, space, rows, name, parent, uri, recipe_dir: Path) -> SweepResult:
    scored = [row for row in rows if row.score is not None]
    if not scored:
        failed = sum(row.state == "failed" for row in rows)
        raise RuntimeError(
            f"sweep {name}: no trial reported {cfg.train.selection_key} "
            f"({failed} of {len(rows)} trials failed; their errors are in the Tune output above)"
        )
    best = scored[0]
    best_cfg = trial_config(cfg.model_dump(mode="json"), best.params)
    checkpoint, model, test = _evaluate_best(best_cfg, store, best, parent, uri)
    tracking.log_params(parent, {f"best.{k}": v for k, v in best.params.items()}, uri=uri)
    tracking.log_metrics(
        parent, {f"best/{cfg.train.selection_key}": best.score, **test}, step=0, uri=uri
    )
    tracking.set_tags(parent, {"vavl.best_trial": best.run_name}, uri=uri)
    path = _write_recipe(best_cfg, name, recipe_dir)
    tracking.log_file(parent, path, uri=uri)
    scores = [(row.params, row.score) for row in rows if row.score is not None]
    for file_name, figure in plots.optuna_figures(scores, space, cfg.train.selection_mode).items():
        tracking.log_figure(parent, figure, f"optuna/{file_name}", uri=uri)
    registry = cfg.train.register_model
    model_uri = tracking.log_model(
        parent,
        model.eval(),
        best_cfg,
        store.manifest.get("normalization"),
        registered_name=registry,
        alias=CHAMPION if registry else None,
        uri=uri,
    )
    tracking.end_run(parent, "FINISHED", uri=uri)
    return SweepResult(name, parent, uri, rows, best, best_cfg, path, checkpoint, test, model_uri)


def _evaluate_best(cfg, store, best: TrialRow, parent: str, uri: str) -> tuple[str, Any, dict]:
    """Read the test split once, with the best trial's best checkpoint; that checkpoint's path
    and model, and the test metrics."""
    import ray.train

    filesystem, root = storage.resolve(cfg.train.storage_path)
    result = ray.train.Result.from_path(f"{root}/{best.run_name}", storage_filesystem=filesystem)
    found = best_checkpoint(result, cfg.train)
    if found is None:
        raise RuntimeError(f"best trial {best.run_name} has no checkpoint")
    checkpoint = found[0]
    with checkpoint.as_directory() as directory:
        model, _, _ = restore_model(directory)
    predictions = predict_split(model, cfg, store, "test")
    for file_name, figure in plots.prediction_figures(predictions, cfg.task, "test").items():
        tracking.log_figure(parent, figure, f"plots/{file_name}", uri=uri)
    return checkpoint.path, model, split_metrics(predictions, cfg.task, "test")


def _write_recipe(cfg: ExperimentConfig, name: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    header = (
        f"# python pipelines/train.py --config configs/tuned/{name}.yaml\n"
        f"# Best trial of sweep {name!r} (selection on {cfg.train.selection_key}).\n"
    )
    tree = cfg.model_dump(mode="json")
    tree["train"].pop("cpus_per_worker", None)  # sized for the sweep, not for a single run
    path.write_text(header + yaml.safe_dump(tree, sort_keys=False))
    return path
