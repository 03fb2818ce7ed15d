"""The file MLflow logs as the servable model's code ("models from code", no pickled object):
loading a logged model runs it, with the vavl package on the path from the model's code_paths.
`vavl.serving` holds the model; its `load_context` reads the weights, config and statistics."""

import mlflow.models

from vavl.serving import ServedVAVL

mlflow.models.set_model(ServedVAVL())
