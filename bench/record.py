"""BENCHMARKS.md: the one dated file where benchmarks write their measured figures.

Each bench owns one section (`## <name>`); `record` replaces that section with the new figures,
the date, the CPU model (`lscpu`) and the command that produced them, and leaves the others.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
TITLE = "# Benchmarks\n\nMeasured figures, written by the scripts in `bench/`; one section each.\n"


def cpu_model() -> str:
    """lscpu's model name: figures are comparable only on the same CPU type."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else "unknown"


def record(name: str, body: str, *, path: Path = BENCHMARKS) -> None:
    """Replace (or add) the section `## name` of BENCHMARKS.md with `body` and its provenance."""
    command = shlex.join([Path(sys.executable).name, _script(), *sys.argv[1:]])
    section = (
        f"## {name}\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_model()} "
        f"({_cores()} cores), `{command}`.\n\n{body.strip()}\n"
    )
    text = path.read_text() if path.exists() else TITLE
    sections = text.split("\n## ")
    head, rest = sections[0], sections[1:]
    kept = [s for s in rest if s.split("\n", 1)[0].strip() != name]
    parts = [head.rstrip() + "\n", *("## " + s.rstrip() + "\n" for s in kept), section]
    path.write_text("\n".join(parts))


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _script() -> str:
    """The bench's path from the repository root, wherever it was run from."""
    script = Path(sys.argv[0]).resolve()
    root = BENCHMARKS.parent
    return str(script.relative_to(root)) if script.is_relative_to(root) else sys.argv[0]
