"""Sweep the learning rate (log scale around the paper's 5e-5) and the batch size.

python tuning/learning_rate.py --config configs/demo.yaml --trials 8 --concurrent 2
"""

import sys

from vavl.search_space import Choice, Float
from vavl.sweep_cli import sweep_main

SPACE = {
    "optim.lr": Float(1e-5, 3e-3, log=True),
    "optim.batch_size": Choice((8, 16, 32)),
}

if __name__ == "__main__":
    sys.exit(sweep_main(SPACE, __doc__.splitlines()[0]))
