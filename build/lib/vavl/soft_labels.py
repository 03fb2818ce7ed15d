"""Soft (distribution) labels: the one tolerance that ingest and the training loss share.

A corpus's class proportions are written with 3 to 9 decimals, so a row sums to 1 only within
rounding: six shares of 0.167 sum to 1.002. Ingest accepts a row whose proportions sum to within
`SOFT_SUM_TOLERANCE` of 1 and stores it renormalised (`renormalise`); the loss
(`vavl.objectives.cross_entropy_loss`) accepts the same tolerance, so whatever ingest accepted
trains. This module imports numpy only: the store and the objectives both import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SOFT_SUM_TOLERANCE = 1e-2


def renormalise(values: Sequence[float]) -> list[float]:
    """`values` divided by their sum (in float64), as float32 numbers: the stored soft label.

    The sum of the float32 result is 1 to within float32 rounding (about 1e-7 per class). Ratios,
    hence the arg-max and its ties, are those of `values`.
    """
    array = np.asarray(values, dtype=np.float64)
    total = array.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"cannot renormalise proportions {list(values)} (sum {total})")
    return (array / total).astype(np.float32).tolist()
