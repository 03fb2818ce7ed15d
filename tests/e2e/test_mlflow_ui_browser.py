"""The MLflow UI, rendered by a real headless Chromium: after a training run and a sweep, the
runs list shows the training run and the sweep parent with its nested trials, and a run page
shows its metrics and its confusion-matrix image.

MLflow's UI is a JavaScript app: pages are loaded with `chromium --headless --dump-dom` and a
virtual-time budget, so the DOM checked is the one the app rendered. The REST API is used only
to find run and experiment ids. Runs whenever a Chromium binary is on the PATH (CI installs
Debian's `chromium` in `.ci/run`); skips otherwise, saying how to install one.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from tests.factories import TINY_TRAINING, synthetic_store, tiny_recipe
from tests.services import mlflow_server
from vavl.config import load_config
from vavl.search_space import Float
from vavl.sweep import run_sweep
from vavl.train import fit

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = "test-ui"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium on PATH (chromium, chromium-browser or google-chrome): "
        "install one, e.g. `apt-get install chromium`",
    ),
]


def rendered(url: str, tmp_path: Path, *, budget_ms: int = 15000) -> str:
    """The DOM of `url` once the app has run for `budget_ms` of virtual time."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def visible_text(dom: str) -> str:
    """The page's text: scripts and styles dropped, tags to spaces, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None):
    """A tiny training run and a tiny 2-trial sweep in one SQLite store: (uri, train, sweep)."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = synthetic_store(
        root / "store",
        shard_rows=16,
        frame_dtype="float32",
        utterances=48,
        seed=7,
        audio_dim=12,
        visual_dim=10,
        unpaired_share=0.3,
    )
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        runs = f"train.storage_path={root / 'runs'}"
        trained = fit(
            tiny_recipe(store, "optim.epochs=1", runs, f"train.experiment={EXPERIMENT}"),
            run_name="ui-train",
            show_progress=False,
        )
        cfg = load_config(
            REPO / "configs" / "demo.yaml",
            [
                *TINY_TRAINING,
                "optim.epochs=2",
                "tune.grace_period=1",
                f"data.store={store}",
                runs,
                f"tune.storage_path={root / 'sweeps'}",
                f"train.experiment={EXPERIMENT}",
            ],
        )
        space = {"loss.residual_weight": Float(0.05, 4.0, log=True)}
        swept = run_sweep(
            cfg, space, name="ui-sweep", trials=2, concurrent=2, recipe_dir=root / "tuned"
        )
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return uri, trained, swept


@pytest.fixture(scope="module")
def ui(tracked, tmp_path_factory: pytest.TempPathFactory):
    uri = tracked[0]
    log = tmp_path_factory.mktemp("ui-server") / "mlflow-server.log"
    artifacts = tmp_path_factory.mktemp("ui-artifacts")
    with mlflow_server(uri, str(artifacts), {}, log) as address:
        yield address


def test_runs_list_shows_the_training_run_and_the_sweep_with_its_trials(
    tracked, ui: str, tmp_path: Path
) -> None:
    uri, _, swept = tracked
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    trials = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{swept.parent_run_id}'"
    )
    assert len(trials) == 2

    listed = visible_text(rendered(f"{ui}/#/experiments/{experiment}/runs", tmp_path))
    assert "ui-train" in listed and "ui-sweep" in listed, listed[:2000]
    # Trials are nested under their parent (collapsed): they count among the matching runs.
    assert f"{1 + 1 + len(trials)} matching runs" in listed, listed[:2000]

    trial = trials[0]
    page = visible_text(
        rendered(f"{ui}/#/experiments/{experiment}/runs/{trial.info.run_id}", tmp_path)
    )
    assert trial.info.run_name in page
    parent_at = page.find("Parent run")
    assert parent_at >= 0 and "ui-sweep" in page[parent_at:], page[:2000]


def test_a_run_page_shows_its_metrics_and_confusion_matrix(
    tracked, ui: str, tmp_path: Path
) -> None:
    uri, trained, _ = tracked
    run = mlflow.MlflowClient(uri).get_run(trained.run_id)
    base = f"{ui}/#/experiments/{run.info.experiment_id}/runs/{trained.run_id}"

    overview = visible_text(rendered(base, tmp_path))
    assert "ui-train" in overview
    for metric in ("test/av/macro_f1", "test/av/accuracy"):
        assert metric in run.data.metrics
        assert metric in overview, overview[:2000]

    image = "plots/test_av_confusion.png"
    dom = rendered(f"{base}/artifacts/{image}", tmp_path)
    shown = re.findall(r"<img\b[^>]*>", dom)
    assert any(f'alt="{image}"' in tag and 'src="' in tag for tag in shown), shown
