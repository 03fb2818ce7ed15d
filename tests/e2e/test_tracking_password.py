"""A tracking URI with a password (MLflow straight on PostgreSQL): training works, and the
password is in no line it prints, no database row and no file it writes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import synthetic_store

pytestmark = [pytest.mark.services, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_a_tracking_password_is_never_printed_or_stored(tracking_server, tmp_path: Path) -> None:
    store = synthetic_store(
        tmp_path / "data", shard_rows=32, utterances=48, seed=3, audio_dim=12, visual_dim=10
    )
    password = f"pw-{secrets.token_hex(8)}"
    # The test server trusts local connections: the password is not checked, only carried.
    assert "://postgres@" in tracking_server.backend_uri
    uri = tracking_server.backend_uri.replace("://postgres@", f"://postgres:{password}@")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines" / "train.py"),
            *("--config", "demo", "--store", store, "--experiment", "password-check"),
            *("--set", "optim.epochs=1", "--set", "model.d_model=16", "--set", "model.n_heads=2"),
            *("--set", f"train.storage_path={work / 'runs'}"),
        ],
        cwd=work,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=900,
    )
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-4000:]
    assert password not in printed
    assert "postgres:***@" in printed  # the URI is still shown, to open the UI with
    assert password not in tracking_server.db_dump()
    for path in work.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
