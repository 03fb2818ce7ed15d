"""Run a command-line script and record which heavy libraries it imported before exiting.

    python tests/heavy_imports.py REPORT.json SCRIPT [ARGS...]

runs SCRIPT as `__main__` with ARGS (as `python SCRIPT ARGS...` would), then writes to REPORT.json
the exit status and which of `HEAVY` were in `sys.modules` when it ended, and exits with the
script's status. A script that never imported `ray` started no Ray session.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

HEAVY = ("torch", "ray", "mlflow")


def run(report: Path, script: str, args: list[str]) -> int:
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))
    code: int | str | None = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as done:
        code = done.code
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(code, str):
        print(code, file=sys.stderr)
    loaded = sorted(name for name in HEAVY if name in sys.modules)
    report.write_text(json.dumps({"status": status, "imported": loaded}))
    return status


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
