"""Sweep the learning rate (log scale around the paper's 5e-5) and the batch size.

python tuning/learning_rate.py --config configs/demo.yaml --trials 8 --concurrent 2

The space: `vavl.spaces.LEARNING_RATE` (also `vavl-sweep --space learning-rate`).
"""

import sys

from vavl.commands.sweep import sweep_main
from vavl.spaces import LEARNING_RATE

if __name__ == "__main__":
    sys.exit(sweep_main(LEARNING_RATE, __doc__.splitlines()[0]))
