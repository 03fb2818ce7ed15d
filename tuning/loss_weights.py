"""Sweep the residual weight and the reconstruction loss weight of VAVL.

    python tuning/loss_weights.py --config configs/demo.yaml --trials 8 --concurrent 2
    ray job submit --working-dir . -- python tuning/loss_weights.py --config configs/crema-d.yaml \\
        --store s3://bucket/stores/crema-d --trials 16 --concurrent 4 --name crema-d-weights

The space, and why its ranges and scales: `vavl.spaces.LOSS_WEIGHTS` (also `vavl-sweep --space
loss-weights` once the package is installed). A sweep of your own: a script like this one with
its own dict of config paths to `vavl.search_space` parameters.
"""

import sys

from vavl.commands.sweep import sweep_main
from vavl.spaces import LOSS_WEIGHTS

if __name__ == "__main__":
    sys.exit(sweep_main(LOSS_WEIGHTS, __doc__.splitlines()[0]))
