"""`make demo`: synthesise a corpus, ingest it, train VAVL with 2 DDP workers, and summarise.

python pipelines/demo.py [--out data/demo] [--utterances 600] [--set key=value ...]

The program: `vavl.commands.demo`; once the package is installed, also the command `vavl-demo`.
"""

import sys

from vavl.commands.demo import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
