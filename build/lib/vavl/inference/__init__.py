"""Applying a trained model: loading it, and Ray Data batch prediction over a store or folders.

Model sources (`load_model`): an MLflow model URI logged by `vavl.tracking.log_model`
(`runs:/<run_id>/model`, `models:/<name>/<version>`, `models:/<name>/<alias>` or
`models:/<name>@<alias>`) or a local checkpoint directory (`vavl.checkpoint`). For an MLflow URI
the experiment config is the training run's `config.yaml` artifact; for `models:/` the run is the
model version's `run_id`.

Normalisation: a model is applied with the statistics it was trained with, those of its training
store's train split. `open_model` takes them, first found wins, from: `stats_from` (a store path
or URI, the `--stats-from` flag); the training run's `manifest.json` artifact (MLflow URIs); the
manifest of the store named by the config's `data.store`. When none can be read it fails naming
all three. A model trained with `data.normalize: none` needs none. The prediction input's own
global statistics are never used: a store of new utterances has no say in the scale the model
sees. A model trained with `data.normalize: speaker` centres each input row on its speaker's
own mean, from the input store's per-speaker statistics (written at ingest, features only);
speakers with fewer than `data.speaker_min_utterances` utterances, and feature folders (which
have no such statistics; a warning says so), are centred on the training mean.

Answers: each utterance gets the fusion head's answer where it has both modalities, else its one
branch's (`vavl.evaluate.answer_rows`); its `condition` column says which (av, audio, visual).

Output: one Parquet file with `id`, `condition`, then `prob_<class>` per class and `predicted`
(the class name) for categorical models, or one float column per attribute. Its key-value
metadata holds `vavl.model_uri`, `vavl.task` and `vavl.normalization` (where the statistics came
from). Rows that cannot be scored go to `<out>.rejects.parquet` (id, file, reason, detail), which
is always written, empty when nothing was rejected: no row is ever dropped.

Modules: `loading` (model, config, statistics), `answers` (rows -> answers, the Ray Data actor),
`batch` (the Ray Data job and its output files).
"""

from vavl.inference.answers import Predictor, answer_table, result_schema
from vavl.inference.batch import (
    PredictionReport,
    PredictSettings,
    folder_rows,
    predict_folders,
    predict_store,
    rejects_path,
)
from vavl.inference.loading import (
    InferenceError,
    LoadedModel,
    is_mlflow_uri,
    load_model,
    model_run_id,
    open_model,
)

__all__ = [
    "InferenceError",
    "LoadedModel",
    "PredictSettings",
    "PredictionReport",
    "Predictor",
    "answer_table",
    "folder_rows",
    "is_mlflow_uri",
    "load_model",
    "model_run_id",
    "open_model",
    "predict_folders",
    "predict_store",
    "rejects_path",
    "result_schema",
]
