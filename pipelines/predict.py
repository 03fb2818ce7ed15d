"""Batch prediction with Ray Data: a trained model answers every utterance of a store or folders.

    python pipelines/predict.py --model runs:/<run_id>/model --store data/demo/store \\
        --split test --out data/demo/predictions.parquet [--actors 2] [--gpus-per-actor 1]
    python pipelines/predict.py --model models:/vavl-demo/1 --audio feats/audio \\
        --visual feats/visual [--labels labels.csv] --out s3://bucket/predictions.parquet

On a running cluster:

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "..."}}' \\
        -- python pipelines/predict.py --model runs:/<run_id>/model --store s3://bucket/store \\
        --out s3://bucket/predictions.parquet --actors 4

The model is an MLflow URI (runs:/, models:/) or a checkpoint directory. Each utterance is
answered with the modalities it has (fusion where both, else its branch). Normalisation uses the
model's training statistics (see `vavl.inference`; `--stats-from STORE` names them explicitly).
Rows that cannot be scored are written to <out>.rejects.parquet with their reason.

The program: `vavl.commands.predict`; once the package is installed, also the
command `vavl-predict`.
"""

import sys

from vavl.commands.predict import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
