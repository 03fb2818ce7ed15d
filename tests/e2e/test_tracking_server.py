"""Smoke test of the real-services harness: MLflow server + PostgreSQL + S3 (moto)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import S3Server
from tests.e2e.conftest import TrackingServer
from tests.services import port_is_open

pytestmark = pytest.mark.services

# The client side holds no storage credentials: artifacts go through the server's proxy.
_CLIENT_STRIPPED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "MLFLOW_S3_ENDPOINT_URL",
)


def _png(width: int, height: int) -> bytes:
    """A small valid RGB PNG (a gradient), written without any imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 40 % 256, y * 60 % 256, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def tracking_uri(tracking_server: TrackingServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the fluent MLflow API at the server for one test, then restore the previous URI."""
    import mlflow

    for key in _CLIENT_STRIPPED_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.uri)
    mlflow.set_tracking_uri(tracking_server.uri)
    try:
        yield tracking_server.uri
    finally:
        mlflow.set_tracking_uri(None)  # then monkeypatch restores the previous environment


def test_runs_metrics_and_artifacts_round_trip(
    tracking_server: TrackingServer,
    tracking_uri: str,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = client.create_experiment("harness-smoke")
    note = tmp_path / "notes.txt"
    note.write_text("audio-visual emotion recognition\n")
    image = tmp_path / "curve.png"
    image.write_bytes(_png(4, 3))

    with mlflow.start_run(experiment_id=exp_id, run_name="sweep") as parent:
        mlflow.log_params({"lr": 5e-5, "batch_size": 32})
        children: dict[str, str] = {}
        for trial in range(2):
            with mlflow.start_run(
                experiment_id=exp_id, run_name=f"trial-{trial}", nested=True
            ) as child:
                mlflow.log_param("trial", trial)
                for step in range(3):
                    mlflow.log_metric("val_ccc", 0.1 * step + trial, step=step)
                mlflow.log_artifact(str(note), artifact_path="text")
                mlflow.log_artifact(str(image), artifact_path="plots")
                children[child.info.run_id] = f"trial-{trial}"
    parent_id = parent.info.run_id

    # Runs, params and metrics, read back through the server.
    found = client.search_runs([exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert {r.info.run_id: r.info.run_name for r in found} == children
    assert client.get_run(parent_id).data.params == {"lr": "5e-05", "batch_size": "32"}
    for run in found:
        trial = int(run.data.params["trial"])
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "val_ccc")
        assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == [
            (step, round(0.1 * step + trial, 6)) for step in range(3)
        ]

    # Artifacts: listed and downloaded through the server, stored in the moto bucket.
    run_id = next(iter(children))
    artifact_uri = client.get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["plots", "text"]
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/curve.png"]
    out = Path(client.download_artifacts(run_id, "", str(tmp_path / "download")))
    assert (out / "text" / "notes.txt").read_text() == note.read_text()
    assert (out / "plots" / "curve.png").read_bytes() == image.read_bytes()

    listing = s3_server.client().list_objects_v2(
        Bucket=tracking_server.bucket, Prefix=f"{tracking_server.artifacts_prefix}/"
    )
    keys = {obj["Key"] for obj in listing.get("Contents", [])}
    for child_id in children:
        for name in ("text/notes.txt", "plots/curve.png"):
            assert any(key.endswith(f"{child_id}/artifacts/{name}") for key in keys), keys

    # The database holds the runs, and never the storage secret.
    dump = tracking_server.db_dump()
    assert parent_id in dump
    assert all(child_id in dump for child_id in children)
    assert s3_server.secret_key not in dump
    assert s3_server.secret_key not in tracking_server.log_path.read_text(errors="replace")
    assert tracking_server.startup_seconds > 0
    assert port_is_open(tracking_server.port)


def test_stack_stops_and_frees_its_port(s3_server: S3Server, tmp_path: Path) -> None:
    """A second, private stack: everything is gone once its context managers exit."""
    import tempfile

    from tests.services import mlflow_server, postgres_server

    env = {**s3_server.env(), "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint}
    with tempfile.TemporaryDirectory(prefix="vavl-pg-") as pg_root:
        pgdata = Path(pg_root) / "pgdata"
        with (
            postgres_server(Path(pg_root)) as backend_uri,
            mlflow_server(
                backend_uri, f"s3://{s3_server.bucket}/stop-check", env, tmp_path / "log"
            ) as uri,
        ):
            port = int(uri.rsplit(":", 1)[1])
            assert port_is_open(port)
            assert (pgdata / "PG_VERSION").exists()
        assert not port_is_open(port)
        assert not pgdata.exists()
