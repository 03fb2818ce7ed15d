"""Answering stored rows with a model: in-process (`answer_table`) or as a Ray Data actor
(`Predictor`). One output row per input row: its answer, or why it could not be scored."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import torch

from vavl.batch import Batch
from vavl.config import TaskConfig
from vavl.evaluate import answer_rows
from vavl.model import VAVL
from vavl.objectives import TaskObjective
from vavl.phases import forward_batch
from vavl.runtime import autocast
from vavl.store import BatchSpec, collate
from vavl.store import schema as S

REJECT_COLUMNS = ("reject_reason", "reject_detail", "reject_file")


def result_schema(task: TaskConfig) -> pa.Schema:
    """The columns a prediction file holds, in order."""
    fields = [pa.field("id", pa.string()), pa.field("condition", pa.string())]
    if task.kind == "categorical":
        fields += [pa.field(f"prob_{name}", pa.float32()) for name in task.classes]
        fields.append(pa.field("predicted", pa.string()))
    else:
        fields += [pa.field(name, pa.float32()) for name in task.attributes]
    return pa.schema(fields)


def _batch_schema(task: TaskConfig) -> pa.Schema:
    return pa.schema([*result_schema(task), *(pa.field(c, pa.string()) for c in REJECT_COLUMNS)])


def _collate_rows(rows: pa.Table, spec: BatchSpec) -> tuple[Batch | None, list[dict[str, Any]]]:
    """Collate the batch; when that fails, find the rows that break it and reject those alone."""
    try:
        return collate(rows, spec), []
    except Exception:  # a bad row somewhere: isolate it below
        pass
    good, rejects = [], []
    for i in range(rows.num_rows):
        try:
            collate(rows.slice(i, 1), spec)
            good.append(i)
        except Exception as err:  # this row's frames cannot be read back: report it
            rejects.append(_reject(rows, i, S.UNREADABLE, f"{type(err).__name__}: {err}"))
    batch = collate(rows.take(good), spec) if good else None
    return batch, rejects


def _reject(rows: pa.Table, i: int, reason: str, detail: str, file: str = "") -> dict[str, Any]:
    return {
        "id": str(rows.column("id")[i].as_py()),
        **dict(zip(REJECT_COLUMNS, (reason, detail, file), strict=True)),
    }


def answer_table(
    model: VAVL,
    rows: pa.Table,
    spec: BatchSpec,
    task: TaskConfig,
    *,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> pa.Table:
    """Stored rows (ROW_SCHEMA, optionally with `reject_*` columns from validation) -> one row
    per input row: its answer, or its reject reason. Runs in-process; `Predictor` wraps it."""
    rejects: list[dict[str, Any]] = []
    if "reject_reason" in rows.column_names:
        flagged = [i for i, r in enumerate(rows.column("reject_reason").to_pylist()) if r]
        for i in flagged:
            row = {c: rows.column(c)[i].as_py() for c in REJECT_COLUMNS}
            rejects.append({"id": str(rows.column("id")[i].as_py()), **row})
        keep = sorted(set(range(rows.num_rows)) - set(flagged))
        rows = rows.take(keep).select(S.ROW_COLUMNS)
    batch, bad = _collate_rows(rows, spec) if rows.num_rows else (None, [])
    rejects += bad
    answered: dict[str, list[Any]] = {name: [] for name in result_schema(task).names}
    if batch is not None:
        _answer_batch(model, batch, task, torch.device(device), precision, answered, rejects)
    table = pa.table(answered, schema=result_schema(task))
    for name in REJECT_COLUMNS:
        table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    if rejects:
        filler = {n: [None] * len(rejects) for n in result_schema(task).names if n != "id"}
        extra = {"id": [r["id"] for r in rejects], **filler}
        extra.update({c: [r[c] for r in rejects] for c in REJECT_COLUMNS})
        table = pa.concat_tables([table, pa.table(extra, schema=_batch_schema(task))])
    return table


def _answer_batch(
    model: VAVL,
    batch: Batch,
    task: TaskConfig,
    device: torch.device,
    precision: str,
    into: dict[str, list[Any]],
    rejects: list[dict[str, Any]],
) -> None:
    """Append each row's answer to the columns `into`, or its reason to `rejects`."""
    batch = batch.to(device)
    with torch.no_grad(), autocast(device, precision):
        out = forward_batch(model, batch)
    raw, conditions = answer_rows(out)
    values = TaskObjective.from_config(task).predict(raw.float())  # (B, K) probs or values
    categorical = task.kind == "categorical"
    names = [f"prob_{c}" for c in task.classes] if categorical else list(task.attributes)
    for i, (uid, condition) in enumerate(zip(batch.ids, conditions, strict=True)):
        if condition is None:
            detail = f"the row has no {' or '.join(model.modalities)} frames, which the model takes"
            rejects.append(
                dict(id=uid, reject_reason=S.NO_FEATURES, reject_detail=detail, reject_file="")
            )
            continue
        into["id"].append(uid)
        into["condition"].append(condition)
        for k, name in enumerate(names):
            into[name].append(float(values[i, k]))
        if categorical:
            into["predicted"].append(task.classes[int(values[i].argmax())])


class Predictor:
    """Ray Data actor: gets the model from the object store once, then answers batches."""

    def __init__(
        self,
        model_ref: list[Any],
        spec: BatchSpec,
        task: dict,
        device: str,
        precision: str,
        threads: int,
    ) -> None:
        import ray

        torch.set_num_threads(max(1, threads))
        self.device = torch.device(device)
        self.model = ray.get(model_ref[0]).to(self.device).eval()
        self.spec, self.task, self.precision = spec, TaskConfig.model_validate(task), precision

    def __call__(self, rows: pa.Table) -> pa.Table:
        return answer_table(
            self.model, rows, self.spec, self.task, device=self.device, precision=self.precision
        )
