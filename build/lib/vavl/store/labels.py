"""Label files of the two corpora: column checks, corpus detection and per-row validation.

CREMA-D (categorical): `FileName, angry, sad, disgust, fear, neutral, happy, SpkrID, Gender,
Split_Set`; the six class columns hold the annotators' consensus proportions (a soft label) and the
hard label is their arg-max, ties going to the first class in that order. The CSVs carry 3 to 9
decimals, so a distribution must sum to 1 within `vavl.soft_labels.SOFT_SUM_TOLERANCE` (1e-2, the
training loss's tolerance too); an accepted row is stored renormalised to sum to 1 (float32).
MSP-IMPROV (attributes): `FileName, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set`, scores in
[1, 5] stored raw as [arousal, valence, dominance].
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vavl.config import CREMA_D_CLASSES, MSP_IMPROV_ATTRIBUTES
from vavl.soft_labels import SOFT_SUM_TOLERANCE, renormalise
from vavl.store import schema as S

COMMON_COLUMNS = ["FileName", "SpkrID", "Gender", "Split_Set"]
SPLIT_NAMES = {"train": "train", "development": "dev", "dev": "dev", "test": "test"}


@dataclass(frozen=True)
class LabelSpec:
    corpus: str
    kind: str  # "categorical" | "attributes"
    value_columns: list[str]
    class_names: list[str] = field(default_factory=list)
    attribute_names: list[str] = field(default_factory=list)
    score_range: tuple[float, float] | None = None

    @property
    def required_columns(self) -> list[str]:
        return ["FileName", *self.value_columns, "SpkrID", "Gender", "Split_Set"]

    def to_manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "source_columns": self.value_columns}
        if self.kind == "categorical":
            out.update(classes=self.class_names, soft=True, tie_break="first class in order")
        else:
            out.update(attributes=self.attribute_names, score_range=list(self.score_range or ()))
        return out


CORPORA: dict[str, LabelSpec] = {
    "crema-d": LabelSpec(
        corpus="crema-d",
        kind="categorical",
        value_columns=list(CREMA_D_CLASSES),
        class_names=list(CREMA_D_CLASSES),
    ),
    "msp-improv": LabelSpec(
        corpus="msp-improv",
        kind="attributes",
        value_columns=["EmoAct", "EmoVal", "EmoDom"],
        attribute_names=list(MSP_IMPROV_ATTRIBUTES),
        score_range=(1.0, 5.0),
    ),
}


def read_label_table(data: bytes, source: str) -> pd.DataFrame:
    """Every cell as a string, so that parsing errors are ours to report per row."""
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise S.StoreError(f"{source}: not a readable CSV ({err})") from None


def detect_spec(columns: list[str], source: str, corpus: str | None = None) -> LabelSpec:
    """The corpus spec named by `corpus`, or the one whose columns the file has.

    Fails at once, naming the missing columns, when the file lacks what the corpus needs.
    """
    present = set(columns)
    if corpus is not None:
        if corpus not in CORPORA:
            raise S.StoreError(f"unknown corpus {corpus!r}; known: {sorted(CORPORA)}")
        candidates = [CORPORA[corpus]]
    else:
        candidates = list(CORPORA.values())
    for spec in candidates:
        if not [c for c in spec.required_columns if c not in present]:
            return spec
    # Name the missing columns of the corpus whose label columns the file resembles most.
    best = max(candidates, key=lambda s: sum(c in present for c in s.value_columns))
    missing = [c for c in best.required_columns if c not in present]
    raise S.StoreError(
        f"{source}: labels CSV lacks required column(s) {missing} for corpus {best.corpus!r} "
        f"(has {columns})"
    )


def _floats(values: list[str]) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except ValueError:
        return None
    return out if all(math.isfinite(v) for v in out) else None


def check_values(spec: LabelSpec, raw: list[str]) -> tuple[str, str] | None:
    """(reason, detail) when the label values of one row are not acceptable, else None."""
    values = _floats(raw)
    named = dict(zip(spec.value_columns, raw, strict=True))
    if values is None:
        return S.LABEL_INVALID, f"non-numeric or non-finite label value(s) {named}"
    if spec.kind == "categorical":
        if any(v < 0.0 or v > 1.0 for v in values):
            return S.LABEL_OUT_OF_RANGE, f"class proportions must lie in [0, 1], got {named}"
        total = sum(values)
        if abs(total - 1.0) > SOFT_SUM_TOLERANCE:
            return S.SOFT_LABEL_SUM, (
                f"class proportions sum to {total:.6g}, not 1 (tolerance {SOFT_SUM_TOLERANCE})"
            )
        return None
    low, high = spec.score_range or (-math.inf, math.inf)
    if any(v < low or v > high for v in values):
        return S.LABEL_OUT_OF_RANGE, f"attribute scores must lie in [{low}, {high}], got {named}"
    return None


def utterance_id(file_name: str) -> str:
    """FileName without its extension (and without any directory part)."""
    base = file_name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def parse_rows(
    table: pd.DataFrame, spec: LabelSpec, source: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Accepted label rows and rejects (id, row, file, reason, detail), in file order.

    `row` is the CSV line number (the header is line 1). A repeated id is rejected on every
    occurrence after the first, whose line the detail names.
    """
    accepted: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    values = table[spec.value_columns].to_numpy()
    for i, rec in enumerate(table[COMMON_COLUMNS].itertuples(index=False)):
        line = i + 2
        uid = utterance_id(rec.FileName)

        def reject(reason: str, detail: str, uid: str = uid, line: int = line) -> None:
            rejects.append(dict(id=uid, row=line, file=source, reason=reason, detail=detail))

        if not uid:
            reject(S.MISSING_ID, f"line {line}: empty FileName {rec.FileName!r}")
            continue
        if uid in first_line:
            reject(S.DUPLICATE_ID, f"id {uid!r} already on line {first_line[uid]}")
            continue
        first_line[uid] = line
        split = SPLIT_NAMES.get(rec.Split_Set.strip().lower())
        if split is None:
            reject(S.UNKNOWN_SPLIT, f"Split_Set {rec.Split_Set!r} is not Train/Development/Test")
            continue
        problem = check_values(spec, list(values[i]))
        if problem is not None:
            reject(*problem)
            continue
        accepted.append(_label_row(spec, uid, line, rec, split, [float(v) for v in values[i]]))
    return accepted, rejects


def _label_row(
    spec: LabelSpec, uid: str, line: int, rec: Any, split: str, values: list[float]
) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        id=uid, row=line, speaker=rec.SpkrID.strip(), gender=rec.Gender.strip(), split=split
    )
    if spec.kind == "categorical":
        row.update(label=int(np.argmax(values)), soft_label=renormalise(values), attributes=None)
    else:
        row.update(label=-1, soft_label=None, attributes=values)
    return row
