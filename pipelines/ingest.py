"""Ingest a corpus (labels CSV + per-utterance .npy features) into a feature store, with Ray Data.

    python pipelines/ingest.py --labels data/crema-d/labels.csv --audio data/crema-d/audio \
        --visual data/crema-d/visual --out data/crema-d/store --shard-rows 512

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python pipelines/ingest.py --labels s3://corpora/crema-d/labels.csv \
        --audio s3://corpora/crema-d/audio --visual s3://corpora/crema-d/visual \
        --out s3://stores/crema-d --frame-dtype float16

A corpus without one modality says so: `--no-visual` (or `--no-audio`) instead of the folder; a
folder that does not exist is an error. Feature sizes default to the one most files have;
frame rates (frames/s, recorded in the manifest) to 50 for audio and 30 for visual.

Inputs and output are local paths or s3:// URIs; S3 endpoint and credentials come from the
standard AWS_* environment variables (AWS_ENDPOINT_URL for an S3-compatible server), never from
the command line. The store is complete only once STORE/manifest.json exists (written last).
The console shows one line per ingest stage and the closing summary table (Ray Data's progress
bars and INFO lines are off; warnings and errors still show).
Exit status: 0 on success, 2 on a refused input or target (the message says which and why),
including an ingest in which more than half of the label rows are rejected for one reason.

The program: `vavl.commands.ingest`; once the package is installed, also the command `vavl-ingest`.
"""

import sys

from vavl.commands.ingest import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
