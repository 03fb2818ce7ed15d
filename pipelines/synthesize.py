"""Write a synthetic audio-visual emotion corpus with known ideal scores (see `vavl.synthetic`).

    ray job submit --working-dir . -- python pipelines/synthesize.py \
        --out /tmp/vavl-synth --utterances 600 --seed 0 --task categorical

Locally: `python pipelines/synthesize.py --out DIR --utterances N --seed S`. The folder gets
labels.csv (CREMA-D or MSP-IMPROV columns), audio/<id>.npy, visual/<id>.npy and ideal.json.
A non-empty folder is refused unless --overwrite is given.

The program: `vavl.commands.synthesize`; once the package is installed, also the
command `vavl-synthesize`.
"""

import sys

from vavl.commands.synthesize import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
