"""The package as a user installs it: a wheel built from this checkout, installed in a fresh venv
outside the checkout, runs its console scripts (synthesize, ingest, train on a shipped recipe
named by name) from a folder that holds nothing of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def fresh_venv(root: Path) -> Path:
    """A venv holding only the built wheel; the dependencies are this interpreter's site-packages
    (added by a .pth file, whose own .pth files, such as an editable install's, are not read)."""
    # Built from a copy of what the wheel is made of: setuptools writes build/ and *.egg-info
    # beside its sources, and a test must not write into the checkout.
    source = root / "source"
    for part in ("platform", "configs"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / part, source / part)
    wheels = root / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*pip_wheel, "-w", str(wheels), str(source)], cwd=root, env=dict(os.environ))
    (wheel,) = wheels.glob("vavl_platform-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=dict(os.environ))
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    run([*pip, "--quiet", "--no-deps", "--no-index", str(wheel)], cwd=root, env=dict(os.environ))
    return venv


def test_wheel_installs_and_its_commands_ingest_and_train_outside_the_checkout(
    tmp_path: Path,
) -> None:
    venv = fresh_venv(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "PYTHONPATH"))}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
    }
    python = str(venv / "bin" / "python")
    where = run([python, "-c", "import vavl; print(vavl.__file__)"], cwd=work, env=env)
    assert Path(where.strip()).is_relative_to(venv), where  # not the checkout's copy

    bin_ = venv / "bin"
    synthesize = [str(bin_ / "vavl-synthesize"), "--out", "corpus", "--utterances", "40"]
    run([*synthesize, "--audio-dim", "12", "--visual-dim", "10"], cwd=work, env=env)
    corpus = work / "corpus"
    run(
        [
            str(bin_ / "vavl-ingest"),
            *("--labels", str(corpus / "labels.csv"), "--audio", str(corpus / "audio")),
            *("--visual", str(corpus / "visual"), "--out", "store"),
        ],
        cwd=work,
        env=env,
    )
    tiny = ["optim.epochs=1", "optim.batch_size=8", "model.d_model=16", "model.n_heads=2"]
    printed = run(
        [
            str(bin_ / "vavl-train"),
            *("--config", "demo", "--store", str(work / "store"), "--workers", "1"),
            *(arg for item in [*tiny, "train.storage_path=runs"] for arg in ("--set", item)),
        ],
        cwd=work,
        env=env,
    )
    assert "test" in printed and (work / "runs").is_dir() and (work / "mlflow.db").is_file()
    # Everything it wrote is under the working directory (mlruns: MLflow's artifact root beside
    # a SQLite store), nothing beside the installed package.
    written = sorted(p.name for p in work.iterdir())
    assert written == ["corpus", "mlflow.db", "mlruns", "runs", "store"]
