"""Label CSV parsing: column checks, corpus detection, and one test per label reject reason."""

from __future__ import annotations

import numpy as np
import pytest

from vavl.store import labels as L
from vavl.store import schema as S

CREMA_HEADER = "FileName,angry,sad,disgust,fear,neutral,happy,SpkrID,Gender,Split_Set"
MSP_HEADER = "FileName,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"


def parse(text: str, corpus: str | None = None) -> tuple[list[dict], list[dict]]:
    table = L.read_label_table(text.encode(), "labels.csv")
    spec = L.detect_spec(list(table.columns), "labels.csv", corpus)
    return L.parse_rows(table, spec, "labels.csv")


def crema(*rows: str) -> str:
    return "\n".join([CREMA_HEADER, *rows]) + "\n"


def test_crema_row_gives_soft_and_hard_label_with_first_class_on_ties() -> None:
    accepted, rejects = parse(crema("a.wav,0.4,0.1,0.4,0.05,0.05,0,1001,Male,Development"))
    assert rejects == []
    (row,) = accepted
    assert row["id"] == "a" and row["split"] == "dev" and row["speaker"] == "1001"
    assert row["label"] == 0  # angry and disgust tie at 0.4: the first in class order wins
    assert row["soft_label"] == pytest.approx([0.4, 0.1, 0.4, 0.05, 0.05, 0.0])
    assert row["attributes"] is None


def test_msp_row_keeps_raw_attributes_and_label_minus_one() -> None:
    text = f"{MSP_HEADER}\nMSP-IMPROV-S01A.wav,2.666667,2.333333,3,2,Female,Test\n"
    (row,), rejects = parse(text)
    assert rejects == [] and row["label"] == -1 and row["split"] == "test"
    assert row["attributes"] == pytest.approx([2.666667, 2.333333, 3.0])


def test_both_corpora_are_detected_from_their_published_headers() -> None:
    # The headers of the paper's label files (/work/shared/formats/*_sample.csv).
    assert L.detect_spec(CREMA_HEADER.split(","), "c.csv").corpus == "crema-d"
    assert L.detect_spec(MSP_HEADER.split(","), "m.csv").corpus == "msp-improv"


def test_missing_columns_fail_at_once_naming_them() -> None:
    text = "FileName,angry,sad,disgust,fear,neutral,SpkrID,Split_Set\na.wav,1,0,0,0,0,1,Train\n"
    with pytest.raises(S.StoreError, match=r"\['happy', 'Gender'\]"):
        parse(text)
    with pytest.raises(S.StoreError, match="EmoAct"):
        parse(crema("a.wav,1,0,0,0,0,0,1,Male,Train"), corpus="msp-improv")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("a.wav,1.2,0,0,0,0,0,1,Male,Train", S.LABEL_OUT_OF_RANGE),
        ("a.wav,0.5,0.2,0,0,0,0,1,Male,Train", S.SOFT_LABEL_SUM),
        ("a.wav,x,0.2,0,0,0,0.8,1,Male,Train", S.LABEL_INVALID),
        ("a.wav,1,0,0,0,0,0,1,Male,Validation", S.UNKNOWN_SPLIT),
        (".wav,1,0,0,0,0,0,1,Male,Train", S.MISSING_ID),
    ],
)
def test_bad_categorical_rows_are_rejected_with_their_reason(row: str, reason: str) -> None:
    accepted, rejects = parse(crema("ok.wav,1,0,0,0,0,0,1,Male,Train", row))
    assert [r["id"] for r in accepted] == ["ok"]
    assert [(r["reason"], r["row"]) for r in rejects] == [(reason, 3)]


def test_soft_sum_tolerance_accepts_three_decimal_rounding() -> None:
    accepted, rejects = parse(crema("a.wav,0.333,0.333,0.333,0,0,0,1,Male,Train"))  # sums 0.999
    assert len(accepted) == 1 and rejects == []
    _, rejects = parse(crema("a.wav,0.33,0.33,0.32,0,0,0,1,Male,Train"))  # sums 0.98
    assert [r["reason"] for r in rejects] == [S.SOFT_LABEL_SUM]


def test_attribute_out_of_range_is_rejected() -> None:
    text = f"{MSP_HEADER}\na.wav,5.5,3,3,1,Male,Train\nb.wav,0.9,3,3,1,Male,Train\n"
    accepted, rejects = parse(text)
    assert accepted == []
    assert [r["reason"] for r in rejects] == [S.LABEL_OUT_OF_RANGE] * 2


def test_duplicate_id_rejects_later_occurrences_naming_the_first_line() -> None:
    accepted, rejects = parse(
        crema(
            "a.wav,1,0,0,0,0,0,1,Male,Train",
            "b.wav,1,0,0,0,0,0,1,Male,Train",
            "a.npy,0,1,0,0,0,0,1,Male,Test",
        )
    )
    assert [r["id"] for r in accepted] == ["a", "b"]
    assert [(r["reason"], r["row"]) for r in rejects] == [(S.DUPLICATE_ID, 4)]
    assert "line 2" in rejects[0]["detail"]


def test_accepted_soft_labels_are_stored_renormalised_and_train() -> None:
    """Six shares of 0.167 (sum 1.002): accepted at ingest, stored summing to 1, and the loss
    takes the stored row: ingest and loss share one tolerance."""
    import torch

    from vavl.objectives import cross_entropy_loss
    from vavl.soft_labels import SOFT_SUM_TOLERANCE

    accepted, rejects = parse(crema("a.wav,0.167,0.167,0.167,0.167,0.167,0.167,1,Male,Train"))
    assert rejects == []
    stored = np.asarray(accepted[0]["soft_label"], dtype=np.float32)
    assert abs(float(stored.sum(dtype=np.float64)) - 1.0) < 1e-6
    np.testing.assert_allclose(stored, 1 / 6, rtol=1e-6)
    assert accepted[0]["label"] == 0  # the tie still goes to the first class
    loss = cross_entropy_loss(torch.zeros(1, 6), torch.tensor(stored[None, :]))
    assert torch.isfinite(loss) and abs(float(loss) - np.log(6)) < 1e-5
    # What ingest refuses, the loss refuses too.
    assert SOFT_SUM_TOLERANCE == L.SOFT_SUM_TOLERANCE
    raw = torch.tensor([[0.5, 0.5 + 2 * SOFT_SUM_TOLERANCE]])
    with pytest.raises(ValueError, match="sums to"):
        cross_entropy_loss(torch.zeros(1, 2), raw)
