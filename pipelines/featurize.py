"""Featurize a corpus of raw media (wav and video files) into a feature store, with Ray Data.

    python pipelines/featurize.py --labels data/crema-d/labels.csv --media data/crema-d/media \
        --out data/crema-d/store --audio-extractor wav2vec2 \
        --audio-model models/wav2vec2-large-robust --audio-layer 12 \
        --visual-extractor effnet-b2 --visual-model models/efficientnet_b2.pth

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python pipelines/featurize.py --labels s3://corpora/x/labels.csv \
        --media s3://corpora/x/media --out s3://stores/x --audio-extractor logmel \
        --npy-dir s3://scratch/x-npy

The frames go through the same validation, rejects and manifest as pipelines/ingest.py.
Models come from local paths only (never downloaded). Needs the `media` extra.
Exit status: 0 on success, 2 on a refused input (the message says which and why).

The program: `vavl.commands.featurize`; once the package is installed, also `vavl-featurize`.
"""

import sys

from vavl.commands.featurize import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
