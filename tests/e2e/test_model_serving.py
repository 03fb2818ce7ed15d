"""A registered model served by MLflow's scoring server (`mlflow models serve`) on 127.0.0.1:
paired, audio-only and visual-only utterances answered in one request, a bad one refused with
a 400 that says why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.factories import stepped_model, tiny_config
from tests.services import free_port
from vavl import tracking

pytestmark = pytest.mark.slow
A, V = 6, 5
NAME = "vavl-served"


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def frames(t: int, d: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(t, d)).round(4).tolist()


def test_registered_model_answers_posted_utterances_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = tiny_config(f"model.audio_dim={A}", f"model.visual_dim={V}", "data.normalize=none")
    run_id = tracking.start_run("serving", "trained", params={})
    tracking.log_model(
        run_id, stepped_model(cfg), cfg, None, registered_name=NAME, alias="champion"
    )
    tracking.end_run(run_id)

    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            *(str(mlflow_cli), "models", "serve", "-m", f"models:/{NAME}@champion"),
            *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
        ],
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        env={  # the server runs uvicorn from the PATH: this venv's
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=2)
                break
            except OSError:
                log = (tmp_path / "serve.log").read_text()
                assert server.poll() is None and time.monotonic() < deadline, log[-3000:]
                time.sleep(1)

        records = [
            {"id": "paired", "audio": frames(4, A, 0), "visual": frames(3, V, 1)},
            {"id": "heard", "audio": frames(2, A, 2), "visual": None},
            {"id": "seen", "visual": frames(5, V, 3)},
        ]
        status, body = post(f"{base}/invocations", {"dataframe_records": records})
        assert status == 200, body
        answers = body["predictions"]
        assert [a["id"] for a in answers] == ["paired", "heard", "seen"]
        assert [a["condition"] for a in answers] == ["av", "audio", "visual"]
        for answer in answers:
            probs = [answer[f"prob_{c}"] for c in cfg.task.classes]
            assert sum(probs) == pytest.approx(1.0, abs=1e-4)
            assert answer["predicted"] == cfg.task.classes[int(np.argmax(probs))]

        bad = [{"id": "short", "audio": frames(2, A - 1, 4)}]
        status, body = post(f"{base}/invocations", {"dataframe_records": bad})
        assert 400 <= status < 500, body
        assert "row 0 (id short), field audio: wrong_dim" in body["message"]
        assert f"expected {A}" in body["message"]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
