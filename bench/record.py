"""BENCHMARKS.md: the one dated file where benchmarks write their measured figures.

Each bench owns one section (`## <name>`); `record` replaces that section with the new figures,
the date, the CPU model (`lscpu`) and the command that produced them, and leaves the others.

Every bench calls `run_alone` first: figures taken while another bench runs are not comparable
(OpenMP threads of two processes wait for each other; a training step timed beside another
process ran 2.4x slower), so a bench started while one runs waits for it to end.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
# One lock per machine (all checkouts); VAVL_BENCH_LOCK names another file.
LOCK_ENV = "VAVL_BENCH_LOCK"
_held_lock: IO[str] | None = None  # open while this process holds the lock; closed at exit
TITLE = "# Benchmarks\n\nMeasured figures, written by the scripts in `bench/`; one section each.\n"


def cpu_model() -> str:
    """lscpu's model name: figures are comparable only on the same CPU type."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else "unknown"


def lock_path() -> Path:
    return Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / "vavl-bench.lock")


def run_alone() -> None:
    """Hold this machine's benchmark lock until this process ends, first waiting (with a line
    on stderr naming the holder) for a bench that holds it. Calling it again is a no-op."""
    global _held_lock
    if _held_lock is not None:
        return
    handle = lock_path().open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        print(
            f"waiting for the benchmark already running ({holder}; lock {lock_path()}): "
            "figures taken side by side are not comparable",
            file=sys.stderr,
            flush=True,
        )
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}: {_command()}\n")
    handle.flush()
    _held_lock = handle


def _command() -> str:
    return shlex.join([Path(sys.executable).name, _script(), *sys.argv[1:]])


def record(name: str, body: str, *, path: Path = BENCHMARKS) -> None:
    """Replace (or add) the section `## name` of BENCHMARKS.md with `body` and its provenance."""
    command = _command()
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
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _script() -> str:
    """The bench's path from the repository root, wherever it was run from."""
    script = Path(sys.argv[0]).resolve()
    root = BENCHMARKS.parent
    return str(script.relative_to(root)) if script.is_relative_to(root) else sys.argv[0]
