"""The logged model: an MLflow pyfunc that answers a table of utterances, for `mlflow models
serve`, `mlflow.pyfunc.load_model` and Spark UDFs alike.

Input, one row per utterance (a pandas DataFrame; `dataframe_records` JSON at the scoring server):

    id       str                     required
    speaker  str                     optional: groups rows for per-speaker centring
    audio    (T_a, D_a) frames       null or absent when the utterance has no audio
    visual   (T_v, D_v) frames       null or absent when it has no video

Output, one row per input row in order: `id`, `condition` (av | audio | visual: the head that
answered), then `prob_<class>` and `predicted` (categorical) or one column per attribute.

A request that cannot be answered as a whole (frames of the wrong size, non-finite values, no
frames the model takes) raises `ServingError` naming the row, id and field: the scoring server
turns it into a 400 response with that message.

The model carries what it needs: its weights (`torch.save` of the state dict, no pickled code),
its experiment config and the training normalisation statistics. With `data.normalize: speaker`
the rows of a speaker with at least `data.speaker_min_utterances` utterances of a modality in
the request are centred on that speaker's mean over them, other rows on the training mean, as
batch prediction does for speakers it has no statistics of.
"""

from __future__ import annotations

import json
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from vavl.config import ExperimentConfig, validate_config
from vavl.model import VAVL

WEIGHTS, CONFIG, STATS = "weights.pt", "config.yaml", "normalization.json"
ARTIFACT = "vavl"  # the artifacts key of the model folder
# What the served model imports, pinned to the versions it was logged with (the scoring
# environment installs these; the vavl code itself travels with the model as code_paths).
REQUIREMENTS = ("torch", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "ray", "scipy")


class ServingError(MlflowException):
    """A request the model cannot answer; the message names the row, id and field. An
    invalid-parameter error, which MLflow's scoring server answers with 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def save_model_folder(
    directory: Path, model: VAVL, cfg: ExperimentConfig, stats: dict[str, Any] | None
) -> Path:
    """The files of a servable model: weights, config and normalisation statistics."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS)
    (directory / CONFIG).write_text(cfg.to_yaml())
    (directory / STATS).write_text(json.dumps(stats))
    return directory


def load_model_folder(directory: Path) -> tuple[VAVL, ExperimentConfig, dict[str, Any] | None]:
    from vavl.builders import build_model

    cfg = validate_config(yaml.safe_load((directory / CONFIG).read_text()), str(directory / CONFIG))
    model = build_model(cfg)
    model.load_state_dict(torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval(), cfg, json.loads((directory / STATS).read_text())


def request_table(frame: pd.DataFrame, model: VAVL, frame_dtype: str = "float32") -> pa.Table:
    """The request's rows as stored rows (ROW_SCHEMA), each checked as ingest checks files."""
    from vavl.store import schema as S
    from vavl.store.validate import Rejected, check_frames

    if "id" not in frame.columns:
        raise ServingError(f"the input has no 'id' column (columns: {list(frame.columns)})")
    unknown = set(frame.columns) - {"id", "speaker", "audio", "visual"}
    if unknown:
        raise ServingError(
            f"unknown input columns {sorted(unknown)}: expected id, speaker, audio, visual"
        )
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        row = dict(
            id=str(record["id"]),
            speaker=str(record.get("speaker") or ""),
            gender="",
            split="predict",
            label=-1,
            soft_label=None,
            attributes=None,
        )
        for modality in ("audio", "visual"):
            value = record.get(modality)
            row[modality], row[f"{modality}_frames"] = None, 0
            if _absent(value):
                continue
            if modality not in model.modalities:
                raise ServingError(
                    f"row {i} (id {row['id']}): {modality} frames given, but the model takes "
                    f"{' and '.join(model.modalities)} only"
                )
            where = f"row {i} (id {row['id']}), field {modality}"
            try:
                array = np.asarray(_frames(value), dtype=np.float64)
                packed = check_frames(array, where, getattr(model, f"{modality}_dim"), frame_dtype)
            except Rejected as err:
                raise ServingError(f"{where}: {err.reason}: {err.detail}") from None
            except (TypeError, ValueError) as err:
                raise ServingError(f"{where}: not a (frames, features) array: {err}") from None
            row[modality], row[f"{modality}_frames"] = packed.tobytes(), packed.shape[0]
        if not (row["audio_frames"] or row["visual_frames"]):
            raise ServingError(
                f"row {i} (id {row['id']}): no {' or '.join(model.modalities)} frames"
            )
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=S.ROW_SCHEMA)


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _frames(value: Any) -> Any:
    """A (T, D) nested sequence from JSON lists or a pandas cell of per-frame arrays."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.stack([np.asarray(v, dtype=np.float64) for v in value])
    return value


def speaker_means(
    rows: pa.Table, frame_dtype: str, dims: dict[str, int], min_utterances: int
) -> dict[str, dict[str, np.ndarray]]:
    """modality -> speaker -> (D,) frame mean over the request's rows of that speaker, for the
    speakers with at least `min_utterances` utterances of that modality (named speakers only)."""
    frames: dict[str, dict[str, list[np.ndarray]]] = {}
    for row in rows.to_pylist():
        for modality, dim in dims.items():
            if row["speaker"] and row[modality] is not None:
                array = np.frombuffer(row[modality], dtype=frame_dtype).reshape(-1, dim)
                frames.setdefault(modality, {}).setdefault(row["speaker"], []).append(array)
    return {
        modality: {
            speaker: np.concatenate(parts).astype(np.float32).mean(axis=0)
            for speaker, parts in by_speaker.items()
            if len(parts) >= min_utterances
        }
        for modality, by_speaker in frames.items()
    }


class ServedVAVL(mlflow.pyfunc.PythonModel):
    """The pyfunc's python model, logged as code (`vavl.served_model`, with the vavl package as
    the model's code_paths), never pickled; `load_context` reads the model folder."""

    model: VAVL
    config: ExperimentConfig
    normalization: dict[str, Any] | None

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts[ARTIFACT])
        self.model, self.config, self.normalization = load_model_folder(folder)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        from vavl.inference.answers import REJECT_COLUMNS, answer_table
        from vavl.inference.loading import LoadedModel

        del context, params
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        rows = request_table(frame, self.model)
        cfg, dims = self.config, {m: getattr(self.model, f"{m}_dim") for m in self.model.modalities}
        means = None
        if cfg.data.normalize == "speaker" and self.normalization is not None:
            means = speaker_means(rows, "float32", dims, cfg.data.speaker_min_utterances)
        loaded = LoadedModel("served", self.model, cfg, None, self.normalization, "the model")
        spec = loaded.batch_spec(frame_dtype="float32", speaker_means=means)
        task = cfg.task
        answers = answer_table(self.model, rows, spec, task).to_pandas()
        failed = answers[answers["reject_reason"].notna()]
        if len(failed):
            first = failed.iloc[0]
            raise ServingError(
                f"id {first['id']}: {first['reject_reason']}: {first['reject_detail']}"
            )
        answers = answers.drop(columns=list(REJECT_COLUMNS)).set_index("id")
        return answers.loc[rows.column("id").to_pylist()].reset_index()


def input_example(model: VAVL, frames: int = 3) -> pd.DataFrame:
    """Two utterances: one with every modality the model takes, one with its first only."""
    rng = np.random.default_rng(0)
    full = {
        m: rng.normal(size=(frames, getattr(model, f"{m}_dim"))).round(3).tolist()
        for m in model.modalities
    }
    partial = {m: (full[m] if m == model.modalities[0] else None) for m in model.modalities}
    rows = [
        {"id": "example-1", "speaker": "", **full},
        {"id": "example-2", "speaker": "", **partial},
    ]
    return pd.DataFrame(rows, columns=["id", "speaker", *model.modalities], dtype=object)


def signature(model: VAVL, example: pd.DataFrame, answers: pd.DataFrame) -> Any:
    """Inputs as `ServedVAVL.predict` reads them (every modality optional per row); outputs
    as inferred from the example's answers."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    # Frames are (T, D) lists; AnyType, because a row without a modality may leave it null or
    # out (NaN in a DataFrame), which an optional Array column refuses. predict checks them.
    frames = AnyType()
    inputs = Schema(
        [
            ColSpec("string", "id"),
            ColSpec("string", "speaker", required=False),
            *(ColSpec(frames, m, required=False) for m in model.modalities),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=infer_signature(example, answers).outputs)


def requirements() -> list[str]:
    """Pinned PyPI requirements of the served model (torch without a local build suffix)."""
    pinned = []
    for name in REQUIREMENTS:
        version = metadata.version(name).split("+")[0]
        pinned.append(f"{name}=={version}")
    return pinned


def log_servable_model(
    model: VAVL,
    cfg: ExperimentConfig,
    stats: dict[str, Any] | None,
    *,
    name: str = "model",
    registered_name: str | None = None,
) -> Any:
    """Log the model under the active MLflow run as a pyfunc with a signature and an input
    example; the vavl package goes with it as code. Returns MLflow's ModelInfo."""
    import vavl

    example = input_example(model)
    served = ServedVAVL()
    served.model, served.config, served.normalization = model.eval(), cfg, stats
    answers = served.predict(None, example)
    with tempfile.TemporaryDirectory() as directory:
        folder = save_model_folder(Path(directory) / ARTIFACT, model, cfg, stats)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("served_model.py")),
            artifacts={ARTIFACT: str(folder)},
            code_paths=[str(Path(vavl.__file__).parent)],
            signature=signature(model, example, answers),
            input_example=example,
            pip_requirements=requirements(),
            registered_model_name=registered_name,
        )
