"""MLflow: one run per training (or sweep trial), params under the config's dotted names, metrics
as `{split}/{condition}/{metric}`, artifacts and the logged model.

Runs are created by the driver and written to by id (`MlflowClient`), never through MLflow's
process-global "active run", so the driver, rank 0 of the workers and a sweep's trials can all
write to their own run at the same time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.tracking import MlflowClient

import vavl
from vavl import storage

if TYPE_CHECKING:
    from vavl.store import FeatureStore

DEFAULT_DB = "mlflow.db"
PARAMS_PER_CALL = 100  # MLflow's log_batch limit
NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
DIGEST_CHARS = 36  # MLflow's limit on a dataset digest; a manifest id has 64 hex digits


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store in the working directory (absolute, so that
    Ray workers running elsewhere write to the same file)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def client(uri: str | None = None) -> MlflowClient:
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def ui_command(uri: str | None = None) -> str:
    """How to open the tracking store `uri` in the MLflow UI, with any password hidden (the
    line is printed, and so ends up in `ray job logs`)."""
    shown = storage.hide_password(uri or tracking_uri())
    if shown.startswith(("http://", "https://")):
        return f"open {shown}"
    mlflow_cli = Path(sys.executable).with_name("mlflow")  # the one beside this interpreter
    return f"{mlflow_cli} ui --backend-store-uri {shown} --port 5000"


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    return f"{vavl.__version__}+{sha}"


def start_run(
    experiment: str,
    run_name: str,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    uri: str | None = None,
) -> str:
    """Create a run (nested under `parent_run_id` if given), log its params; return its id."""
    mlflow_client = client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow_client.create_experiment(experiment)
    all_tags = {"vavl.code_version": code_version(), **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    log_params(run.info.run_id, params, uri=uri)
    return run.info.run_id


def describe(run_id: str, text: str, *, uri: str | None = None) -> None:
    """Set the run's description (the MLflow UI shows it on the run page)."""
    client(uri).set_tag(run_id, NOTE, text)


def log_store(
    run_id: str, store_uri: str, manifest_id: str, *, context: str = "train", uri=None
) -> None:
    """Record the feature store as the run's input dataset: source the store's URI, digest its
    manifest id (the first `DIGEST_CHARS`; the whole id is the input tag `vavl.manifest_id` and
    the param data.manifest_id), so a run links to the data it used."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    shown = storage.redact(store_uri)
    with warnings.catch_warnings():  # a local path matches two equivalent local sources
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(shown)
    name = shown.rstrip("/").rsplit("/", 1)[-1] or shown
    dataset = MetaDataset(source, name=name, digest=manifest_id[:DIGEST_CHARS])
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag("vavl.manifest_id", manifest_id)]
    client(uri).log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])


def store_words(store_uri: str, manifest_id: str | None = None) -> str:
    """How a description names a store: its URI and the start of its manifest id."""
    manifest = f" (manifest {manifest_id[:12]})" if manifest_id else ""
    return f"feature store `{storage.redact(store_uri)}`{manifest}"


def record_training_run(
    run_id: str,
    recipe: str,
    store: FeatureStore,
    parent_run_id: str | None = None,
    *,
    uri: str | None = None,
) -> None:
    """A training run's (or sweep trial's) store as its input, and its description: recipe,
    store and, under a parent run, the sweep or multi-seed run it belongs to."""
    log_store(run_id, store.uri, store.manifest_id, uri=uri)
    what = f"recipe `{recipe}` on {store_words(store.uri, store.manifest_id)}"
    if not parent_run_id:
        describe(run_id, f"Training run of {what}.", uri=uri)
        return
    tags = client(uri).get_run(parent_run_id).data.tags
    kind = tags.get("vavl.kind") or tags.get("vavl.run_kind")  # sweep or multiseed parents
    lead = {"sweep": "Trial of sweep", "multiseed": "Seed run of"}.get(kind, "Child run of")
    describe(run_id, f"{lead} `{tags.get('vavl.run_name', parent_run_id)}`: {what}.", uri=uri)


def log_params(run_id: str, params: Mapping[str, Any], *, uri: str | None = None) -> None:
    from mlflow.entities import Param

    items = [Param(key, _param_value(value)) for key, value in params.items()]
    mlflow_client = client(uri)
    for start in range(0, len(items), PARAMS_PER_CALL):
        mlflow_client.log_batch(run_id, params=items[start : start + PARAMS_PER_CALL])


def _param_value(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def log_metrics(
    run_id: str, metrics: Mapping[str, float], *, step: int, uri: str | None = None
) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items = [Metric(key, float(value), stamp, step) for key, value in metrics.items()]
    mlflow_client = client(uri)
    for start in range(0, len(items), 1000):
        mlflow_client.log_batch(run_id, metrics=items[start : start + 1000])


def set_tags(run_id: str, tags: Mapping[str, str], *, uri: str | None = None) -> None:
    mlflow_client = client(uri)
    for key, value in tags.items():
        mlflow_client.set_tag(run_id, key, value)


def log_text(run_id: str, text: str, artifact_file: str, *, uri: str | None = None) -> None:
    client(uri).log_text(run_id, text, artifact_file)


def log_file(run_id: str, path: str | Path, artifact_path: str | None = None, *, uri=None) -> None:
    client(uri).log_artifact(run_id, str(path), artifact_path)


RUN_LOG = "logs/driver.log"  # the run's warnings, as an artifact
RUN_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def recorded_warnings(
    run_id: str, *, uri: str | None = None, level: int = logging.WARNING
) -> Iterator[Path]:
    """Record this process's log records at `level` and above (ours, Ray's, MLflow's) and its
    Python warnings while the block runs, then log them to the run as `RUN_LOG`, also when the
    block fails. The console still shows what it showed: this adds a record, it hides nothing.

    Records reach the root logger's handlers unless a logger stops them (Ray and MLflow give
    theirs `propagate = False`): the file handler goes on the root logger and on every such
    logger, so each record is written once."""
    folder, name = RUN_LOG.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter(RUN_LOG_FORMAT))
        loggers = [logging.getLogger()] + [
            found
            for found in list(logging.Logger.manager.loggerDict.values())
            if isinstance(found, logging.Logger) and not found.propagate
        ]
        for logger in loggers:
            logger.addHandler(handler)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            text = warnings.formatwarning(message, category, filename, lineno, line).strip()
            handler.handle(
                logging.LogRecord("py.warnings", logging.WARNING, filename, lineno, text, (), None)
            )
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield path
        finally:
            warnings.showwarning = shown
            for logger in loggers:
                logger.removeHandler(handler)
            handler.close()
            log_file(run_id, path, folder, uri=uri)


def log_figure(run_id: str, figure: Any, artifact_file: str, *, uri: str | None = None) -> None:
    import matplotlib.pyplot as plt

    client(uri).log_figure(run_id, figure, artifact_file)
    plt.close(figure)


def end_run(run_id: str, status: str = "FINISHED", *, uri: str | None = None) -> None:
    client(uri).set_terminated(run_id, status=status)


def log_model(
    run_id: str,
    model: Any,
    cfg: Any,
    stats: dict[str, Any] | None,
    *,
    registered_name: str | None = None,
    alias: str | None = None,
    uri: str | None = None,
) -> str:
    """Log the model as a servable pyfunc (`vavl.serving`: weights, config and normalisation
    statistics `stats`, a signature and an input example) and, with `registered_name`, register
    it (and point `alias` at the new version). Returns the model URI `runs:/<id>/model`."""
    from vavl.serving import log_servable_model

    mlflow_client = client(uri)
    with mlflow.start_run(run_id=run_id):
        info = log_servable_model(model, cfg, stats, registered_name=registered_name)
    if registered_name and alias:
        version = info.registered_model_version
        mlflow_client.set_registered_model_alias(registered_name, alias, str(version))
    return f"runs:/{run_id}/model"


def find_run(experiment: str, run_name: str, *, uri: str | None = None) -> str | None:
    """The id of the run tagged with this VAVL run name, if any."""
    mlflow_client = client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = mlflow_client.search_runs(
        [found.experiment_id], filter_string=f"tags.`vavl.run_name` = '{run_name}'", max_results=1
    )
    return runs[0].info.run_id if runs else None
