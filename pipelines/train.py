"""Train a VAVL model with Ray Train DDP over a feature store; everything is logged to MLflow.

    python pipelines/train.py --config configs/demo.yaml [--store PATH|s3://...] [--set k=v ...]

On a running cluster (see README, "Running on a cluster"):

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "..."}}' \\
        -- python pipelines/train.py --config configs/demo.yaml --store s3://bucket/stores/demo

The program: `vavl.commands.train`; once the package is installed, also the command `vavl-train`.
"""

import sys

from vavl.commands.train import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
