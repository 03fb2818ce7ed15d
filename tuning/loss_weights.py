"""Sweep the residual weight and the reconstruction loss weight of VAVL.

    python tuning/loss_weights.py --config configs/demo.yaml --trials 8 --concurrent 2
    ray job submit --working-dir . -- python tuning/loss_weights.py --config configs/crema-d.yaml \\
        --store s3://bucket/stores/crema-d --trials 16 --concurrent 4 --name crema-d-weights

Why these ranges and scales:
- residual_weight scales the shared block's input added back to its output before a LayerNorm.
  The LayerNorm removes the overall scale, so what matters is the ratio of the residual to the
  shared block's output: a multiplicative knob, searched on a log scale. Below 0.05 the shared
  block alone decides (the residual is gone); above 4 the shared block barely contributes.
- reconstruction_weight multiplies an MSE on normalised features (about 1 at the start, falling
  to a few hundredths) against a prediction loss of order 1 (cross-entropy over six classes, or
  1 - CCC): another ratio, searched on a log scale from a tenth to ten times the task loss. The
  paper's 1 (CCC) and 2 (cross-entropy) lie inside.
"""

import sys

from vavl.search_space import Float
from vavl.sweep_cli import sweep_main

SPACE = {
    "loss.residual_weight": Float(0.05, 4.0, log=True),
    "loss.reconstruction_weight": Float(0.1, 10.0, log=True),
}

if __name__ == "__main__":
    sys.exit(sweep_main(SPACE, __doc__.splitlines()[0]))
