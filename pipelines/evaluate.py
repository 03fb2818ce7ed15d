"""Evaluate a trained model on a store split: metrics per condition with 95% bootstrap intervals,
and the missing-modality robustness curve, logged as a new MLflow run.

    python pipelines/evaluate.py --model runs:/<run_id>/model --store data/demo/store \\
        [--split test] [--missing-share 0,0.25,0.5,0.75,1] [--drop visual,audio,either] \\
        [--seed 0] [--bootstrap 1000]

On a running cluster:

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "..."}}' \\
        -- python pipelines/evaluate.py --model models:/vavl-demo/1 --store s3://bucket/store

The protocol is defined in `vavl.robustness` (one curve per dropped modality requested). The new
run is tagged `vavl.evaluates=<training run id>` when the model URI names a run, and lands in the
training run's experiment (else the config's train.experiment, or --experiment).

The program: `vavl.commands.evaluate`; once the package is installed, also the
command `vavl-evaluate`.
"""

import sys

from vavl.commands.evaluate import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
