"""bench/record.py: one benchmark at a time on a machine, and BENCHMARKS.md's sections."""

from __future__ import annotations

import importlib.util
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# A stand-in bench: takes the lock (twice: the second call is a no-op), says so, and holds it
# until its stdin closes.
BENCH_SCRIPT = (
    f"import sys; sys.path.insert(0, {str(BENCH)!r}); import record; record.run_alone(); "
    "record.run_alone(); print('running', flush=True); sys.stdin.read()"
)


def _load_record():
    spec = importlib.util.spec_from_file_location("bench_record", BENCH / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start_bench(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", BENCH_SCRIPT],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_bench_waits_until_the_first_ends(tmp_path: Path) -> None:
    env = {**os.environ, "VAVL_BENCH_LOCK": str(tmp_path / "bench.lock")}
    first = _start_bench(env)
    second = None
    try:
        assert first.stdout.readline().strip() == "running"
        second = _start_bench(env)
        # The second says it waits, naming the holder, and blocks on the lock; had it not
        # waited, it would say "running" on stdout instead.
        ready, _, _ = select.select([second.stdout, second.stderr], [], [], 60)
        assert ready == [second.stderr], "the second bench did not wait for the first"
        waiting = second.stderr.readline()
        assert waiting.startswith("waiting for the benchmark already running")
        assert f"pid {first.pid}:" in waiting
        assert second.poll() is None  # blocked: the first still holds the lock
        first.stdin.close()
        assert first.wait(timeout=30) == 0
        out, err = second.communicate(input="", timeout=30)
        assert second.returncode == 0, err
        assert out.strip() == "running"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_record_replaces_its_own_section_and_keeps_the_others(tmp_path: Path) -> None:
    record = _load_record()
    path = tmp_path / "BENCHMARKS.md"
    record.record("model step", "first figures", path=path)
    record.record("store", "store figures", path=path)
    record.record("model step", "second figures", path=path)
    text = path.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "first figures" not in text
    assert text.count("## model step\n") == 1 and text.count("## store\n") == 1
    assert "second figures" in text and "store figures" in text
    assert f"on {record.cpu_model()} (" in text  # provenance: the CPU model each time


@pytest.mark.parametrize("value", ["", None])
def test_the_lock_lives_in_the_temp_folder_unless_named(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    record = _load_record()
    if value is None:
        monkeypatch.delenv("VAVL_BENCH_LOCK", raising=False)
    else:
        monkeypatch.setenv("VAVL_BENCH_LOCK", value)
    assert record.lock_path().name == "vavl-bench.lock"
