"""Loading a trained model for prediction: the model, its config and its training statistics.

See `vavl.inference` for the sources accepted and the order in which normalisation statistics
are looked for.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vavl import storage
from vavl.checkpoint import STATE_FILE, restore_model
from vavl.config import ExperimentConfig, validate_config
from vavl.model import VAVL
from vavl.store import BatchSpec, FeatureStore, StoreError
from vavl.store.reader import normalisation


class InferenceError(ValueError):
    """A model, input or output that prediction cannot use (the message names which and why)."""


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(("runs:/", "models:/"))


def model_run_id(uri: str) -> str | None:
    """The MLflow run that logged the model at `uri` (None for a checkpoint directory)."""
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/") :].split("/", 1)[0]
        if not run_id:
            raise InferenceError(f"model URI {uri!r} names no run (expected runs:/<run_id>/model)")
        return run_id
    if not uri.startswith("models:/"):
        return None
    from vavl import tracking

    path = uri[len("models:/") :].strip("/")
    name, sep, alias = path.partition("@")
    if not sep:
        name, _, alias = path.partition("/")
    if not name or not alias:
        raise InferenceError(f"model URI {uri!r}: expected models:/<name>/<version or alias>")
    client = tracking.client()
    found = (
        client.get_model_version(name, alias)
        if alias.isdigit()
        else client.get_model_version_by_alias(name, alias)
    )
    return found.run_id or None


def _run_artifact(run_id: str, name: str) -> str | None:
    """The text of one artifact of a run, or None when the run has no such artifact."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from vavl import tracking

    tracking.client()  # points MLflow at MLFLOW_TRACKING_URI (or ./mlflow.db)
    with tempfile.TemporaryDirectory() as directory:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=name, dst_path=directory
            )
        except (MlflowException, OSError):
            return None
        return Path(local).read_text()


def load_model(uri: str) -> tuple[VAVL, ExperimentConfig | None]:
    """The model at `uri` (eval mode, CPU) and its experiment config when it can be found."""
    if is_mlflow_uri(uri):
        import mlflow.pytorch

        from vavl import tracking

        tracking.client()
        model = mlflow.pytorch.load_model(uri, map_location="cpu")
        if not isinstance(model, VAVL):
            raise InferenceError(f"{uri} holds a {type(model).__name__}, not a VAVL model")
        run_id = model_run_id(uri)
        text = _run_artifact(run_id, "config.yaml") if run_id else None
        cfg = validate_config(yaml.safe_load(text), f"{uri} config.yaml") if text else None
        return model.eval(), cfg
    if not (Path(uri) / STATE_FILE).is_file():
        raise InferenceError(
            f"{uri} is neither an MLflow model URI (runs:/..., models:/...) nor a checkpoint "
            f"directory (no {STATE_FILE} in it)"
        )
    model, cfg, _ = restore_model(uri)
    return model, cfg


@dataclass
class LoadedModel:
    """A model ready to predict: its config and the normalisation statistics it was trained with."""

    uri: str
    model: VAVL
    config: ExperimentConfig
    run_id: str | None
    normalization: dict[str, Any] | None  # the manifest's "normalization" block, or None
    normalization_source: str

    def batch_spec(
        self,
        *,
        frame_dtype: str,
        task_kind: str | None = None,
        speaker_means: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> BatchSpec:
        """How to collate rows for this model; `task_kind` is the input's label kind and
        `speaker_means` the input's own per-speaker means (models trained with
        `data.normalize: speaker`; rows of speakers not in it are centred on the training mean)."""
        task = self.config.task
        mode = self.config.data.normalize if self.normalization is not None else "none"
        return BatchSpec(
            audio_dim=self.model.audio_dim,
            visual_dim=self.model.visual_dim,
            frame_dtype=frame_dtype,
            task_kind=task_kind or task.kind,
            num_classes=len(task.classes) if task.kind == "categorical" else 0,
            num_attributes=len(task.attributes) if task.kind == "attributes" else 0,
            **normalisation(self.normalization, mode, speaker_means),
        )

    def store_spec(self, store: FeatureStore) -> BatchSpec:
        """How to collate a store's rows for this model: the training statistics, and (models
        trained with `data.normalize: speaker`) the store's own per-speaker means."""
        speakers = None
        if self.config.data.normalize == "speaker" and self.normalization is not None:
            speakers = store.speaker_means(self.config.data.speaker_min_utterances)
        return self.batch_spec(
            frame_dtype=store.frame_dtype, task_kind=store.task_kind, speaker_means=speakers
        )

    def check_store(self, store: FeatureStore, *, labels: bool) -> None:
        """Fail when the store's frames do not fit the model, or (with `labels`, for scoring)
        when its labels are not the ones the model predicts. A modality the model has no branch
        for is not read (a model of an audio-only corpus answers a paired store from audio);
        one the store lacks leaves the model its other branch."""
        shared = [m for m in self.model.modalities if getattr(store, f"{m}_dim")]
        if not shared:
            has = [m for m in ("audio", "visual") if getattr(store, f"{m}_dim")]
            raise InferenceError(
                f"store {storage.redact(store.uri)} has {' and '.join(has) or 'no'} frames; the "
                f"model {self.uri} takes {' and '.join(self.model.modalities)} only"
            )
        for modality in shared:
            dim = getattr(store, f"{modality}_dim")
            expected = getattr(self.model, f"{modality}_dim")
            if dim != expected:
                raise InferenceError(
                    f"store {storage.redact(store.uri)} has {modality} dim {dim}; the model "
                    f"{self.uri} takes {expected}"
                )
        task = self.config.task
        names = task.classes if task.kind == "categorical" else task.attributes
        found = store.class_names if store.task_kind == "categorical" else store.attribute_names
        if labels and (store.task_kind != task.kind or list(names) != found):
            raise InferenceError(
                f"store {storage.redact(store.uri)} holds {store.task_kind} labels {found}; the "
                f"model {self.uri} predicts {task.kind} {list(names)}"
            )


def open_model(uri: str, *, stats_from: str | None = None) -> LoadedModel:
    """`load_model` plus the training normalisation statistics (see the module docstring)."""
    model, cfg = load_model(uri)
    if cfg is None:
        raise InferenceError(
            f"{uri}: its run has no config.yaml artifact, so the task and normalisation it was "
            "trained with are unknown; log models through vavl.train.fit"
        )
    run_id = model_run_id(uri)
    stats, source = _training_stats(cfg, run_id, stats_from)
    return LoadedModel(uri, model, cfg, run_id, stats, source)


def _training_stats(
    cfg: ExperimentConfig, run_id: str | None, stats_from: str | None
) -> tuple[dict[str, Any] | None, str]:
    if cfg.data.normalize == "none":
        return None, "none (data.normalize=none)"
    if stats_from:
        stats = FeatureStore.open(stats_from).manifest.get("normalization")
        if not stats:
            raise InferenceError(f"--stats-from {storage.redact(stats_from)} has no train stats")
        return stats, f"store {storage.redact(stats_from)}"
    if run_id:
        text = _run_artifact(run_id, "manifest.json")
        if text and json.loads(text).get("normalization"):
            return json.loads(text)["normalization"], f"run {run_id} manifest.json"
    try:
        stats = FeatureStore.open(cfg.data.store).manifest.get("normalization")
    except (StoreError, storage.StorageError, OSError):
        stats = None
    if stats:
        return stats, f"store {storage.redact(cfg.data.store)} (config data.store)"
    raise InferenceError(
        "the model's normalisation statistics were not found: no --stats-from STORE, no "
        f"manifest.json artifact in run {run_id}, and the training store "
        f"{storage.redact(cfg.data.store)} (config data.store) cannot be read"
    )
