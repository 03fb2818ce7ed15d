"""Session-wide real services for tests: one local Ray cluster, one S3-compatible server.

Both start on this machine's loopback only and are stopped when the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import TRAIN_POLL, free_port

# Quiet, deterministic Ray for every test process (workers inherit the environment).
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Ray Train's controller polls its workers every 2 s by default and waits for a poll at each
# phase (group started, training finished): a `tests.factories.tiny_recipe` fit of 2 epochs on 48
# utterances took 30 s, and 24 s at 0.25 s (2026-12-07). Only latency changes: a poll is cheap.
os.environ.setdefault(TRAIN_POLL, "0.25")


@pytest.fixture(scope="session")
def ray_cluster(s3_server: S3Server) -> Iterator[None]:
    """One local Ray cluster with 2 CPUs shared by every Ray-using test. It starts once the S3
    server's settings are in the environment, as a user's cluster starts with their AWS settings:
    workers find credentials in their own environment (`vavl.storage`)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self):  # -> botocore S3 client
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


def _moto_server_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: install the dev extra (moto[server])")
    return [found, "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server on 127.0.0.1, with one bucket; its env is set for the session."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen(
        _moto_server_command(port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start on {endpoint}") from None
            time.sleep(0.2)
    server = S3Server(endpoint, "vavl-test", "AKIATESTKEY0000000000", "test-secret-do-not-log")
    saved = {key: os.environ.get(key) for key in server.env()}
    os.environ.update(server.env())
    server.client().create_bucket(Bucket=server.bucket)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 3-layer, 16-wide wav2vec2 saved with save_pretrained (the `media` extra)."""
    pytest.importorskip("transformers", reason="needs the media extra (transformers)")
    from vavl.media.samples import tiny_wav2vec2

    return tiny_wav2vec2(tmp_path_factory.mktemp("wav2vec2") / "model")


@pytest.fixture(scope="session")
def effnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EfficientNet-B2 state dict with random weights, saved to a file."""
    from vavl.media.samples import random_effnet

    return random_effnet(tmp_path_factory.mktemp("effnet") / "effnet_b2.pt")
