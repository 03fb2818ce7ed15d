"""Local storage where a written file appears whole or not at all, and the sweep's check of the
state Tune saved before it resumes from it."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from vavl import storage
from vavl.sweep import saved_sweep_state

KILLED_MID_WRITE = """
import os, signal, sys
from vavl import storage
fs, root = storage.resolve(sys.argv[1], whole_files=True)
out = fs.open_output_stream(f"{root}/state.json")
out.write(b"[" + b"1," * 100_000)  # more than any write buffer holds
out.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_mid_file_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("[0]")
    done = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path)], check=False)
    assert done.returncode == -9
    assert json.loads((tmp_path / "state.json").read_text()) == [0]
    # What it had written is in a hidden sibling that no reader looks at.
    (leftover,) = (p for p in tmp_path.iterdir() if p.name != "state.json")
    assert leftover.name.startswith(".state.json.tmp-") and leftover.stat().st_size > 0


def test_a_closed_file_replaces_the_old_one_and_a_failed_write_keeps_it(tmp_path: Path) -> None:
    fs, root = storage.resolve(str(tmp_path), whole_files=True)
    with fs.open_output_stream(f"{root}/a.json") as out:
        out.write(b"new")
    assert (tmp_path / "a.json").read_bytes() == b"new"

    writer = storage.WholeFileWriter(str(tmp_path / "a.json"))
    writer.write(b"half")
    with pytest.raises(TypeError):
        writer.write("not bytes")  # type: ignore[arg-type]
    writer.close()
    assert (tmp_path / "a.json").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_tune_can_copy_into_it_and_ship_it_to_other_processes(tmp_path: Path) -> None:
    source = tmp_path / "staging"
    (source / "trial").mkdir(parents=True)
    (source / "trial" / "result.json").write_bytes(b"x" * (9 << 20))  # more than one chunk
    fs, root = storage.resolve(str(tmp_path / "sweeps"), whole_files=True)
    shipped = pickle.loads(pickle.dumps(fs))
    assert shipped == fs and storage.needs_dirs(shipped)

    pafs.copy_files(str(source), root, destination_filesystem=shipped)
    assert (tmp_path / "sweeps" / "trial" / "result.json").stat().st_size == 9 << 20
    shipped.copy_file(f"{root}/trial/result.json", f"{root}/copy.json")
    assert (tmp_path / "sweeps" / "copy.json").stat().st_size == 9 << 20
    assert sorted(p.name for p in (tmp_path / "sweeps").iterdir()) == ["copy.json", "trial"]


def _sweep_folder(tmp_path: Path, states: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    (tmp_path / "tuner.pkl").write_bytes(b"tuner")
    for session, text in states.items():
        (tmp_path / f"experiment_state-{session}.json").write_text(text)
    return storage.resolve(str(tmp_path), whole_files=True)


def test_a_sweep_killed_before_its_first_save_has_no_state(tmp_path: Path) -> None:
    assert saved_sweep_state(*_sweep_folder(tmp_path, {})) is None


def test_the_newest_readable_state_is_the_one_resumed(tmp_path: Path) -> None:
    fs, path = _sweep_folder(
        tmp_path, {"2026-12-08_01-10-49": '{"a": 1}', "2026-12-08_01-11-56": '{"a": 2}'}
    )
    assert saved_sweep_state(fs, path) == f"{path}/experiment_state-2026-12-08_01-11-56.json"


def test_a_damaged_state_names_the_file_and_the_earlier_state(tmp_path: Path) -> None:
    fs, path = _sweep_folder(
        tmp_path, {"2026-12-08_01-10-49": '{"a": 1}', "2026-12-08_01-11-56": '{"trial_data": ["'}
    )
    with pytest.raises(storage.StorageError) as raised:
        saved_sweep_state(fs, path)
    message = str(raised.value)
    assert message.startswith(f"{path}/experiment_state-2026-12-08_01-11-56.json:")
    assert "move it aside" in message and "2026-12-08_01-10-49.json" in message


def test_a_damaged_only_state_says_to_start_again(tmp_path: Path) -> None:
    fs, path = _sweep_folder(tmp_path, {"2026-12-08_01-10-49": ""})
    with pytest.raises(storage.StorageError, match="under a new --name"):
        saved_sweep_state(fs, path)
