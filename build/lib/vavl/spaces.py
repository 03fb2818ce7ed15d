"""The named search spaces that `vavl-sweep --space NAME` and the scripts in tuning/ run.

LOSS_WEIGHTS, why these ranges and scales:
- residual_weight scales the shared block's input added back to its output before a LayerNorm.
  The LayerNorm removes the overall scale, so what matters is the ratio of the residual to the
  shared block's output: a multiplicative knob, searched on a log scale. Below 0.05 the shared
  block alone decides (the residual is gone); above 4 the shared block barely contributes.
- reconstruction_weight multiplies an MSE on normalised features (about 1 at the start, falling
  to a few hundredths) against a prediction loss of order 1 (cross-entropy over six classes, or
  1 - CCC): another ratio, searched on a log scale from a tenth to ten times the task loss. The
  paper's 1 (CCC) and 2 (cross-entropy) lie inside.

LEARNING_RATE: log scale around the paper's 5e-5 up to what small models take, and the batch size.
"""

from __future__ import annotations

from vavl.search_space import Choice, Float, SearchSpace

LOSS_WEIGHTS: SearchSpace = {
    "loss.residual_weight": Float(0.05, 4.0, log=True),
    "loss.reconstruction_weight": Float(0.1, 10.0, log=True),
}

LEARNING_RATE: SearchSpace = {
    "optim.lr": Float(1e-5, 3e-3, log=True),
    "optim.batch_size": Choice((8, 16, 32)),
}

SPACES: dict[str, SearchSpace] = {"loss-weights": LOSS_WEIGHTS, "learning-rate": LEARNING_RATE}
