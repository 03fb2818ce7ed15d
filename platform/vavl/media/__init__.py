"""Raw media to frame features: decoding (PyAV), resampling, face crops (OpenCV), extractors
(wav2vec2-family models from a local `transformers` folder, log-mel filterbanks, EfficientNet-B2
from a local weights file) and the Ray Data job that feeds the feature store's ingest.

Needs the `media` extra (`pip install 'vavl-platform[media]'`): av, opencv-python-headless,
transformers. Nothing here downloads weights or data: every model comes from a local path.
"""
