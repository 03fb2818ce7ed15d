"""What a training run records about its data, read back from a real (SQLite) MLflow store: the
feature store as its input dataset (source the store URI, digest the manifest id, context
"train"), and a description naming its recipe, store and the sweep it belongs to."""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from vavl import tracking

MANIFEST_ID = "0123456789abcdef" * 4  # 64 hex digits, like a store's sha256


@dataclass
class Store:  # what tracking reads of a vavl.store.FeatureStore
    uri: str
    manifest_id: str = MANIFEST_ID


@pytest.fixture
def uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    found = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", found)
    return found


def test_a_training_run_records_its_store_and_says_what_it_is(uri: str, tmp_path: Path) -> None:
    store = Store(str(tmp_path / "stores" / "crema-d"))
    run_id = tracking.start_run("test-tracking", "run-1", params={}, uri=uri)
    tracking.record_training_run(run_id, "demo", store, uri=uri)

    run = mlflow.MlflowClient(uri).get_run(run_id)
    (logged,) = run.inputs.dataset_inputs
    assert logged.dataset.digest == MANIFEST_ID[: tracking.DIGEST_CHARS]
    assert logged.dataset.name == "crema-d"
    assert logged.dataset.source_type == "local"
    assert json.loads(logged.dataset.source)["uri"] == store.uri
    tags = {tag.key: tag.value for tag in logged.tags}
    assert tags == {"mlflow.data.context": "train", "vavl.manifest_id": MANIFEST_ID}
    manifest = f"(manifest {MANIFEST_ID[:12]})"
    assert run.data.tags[tracking.NOTE] == (
        f"Training run of recipe `demo` on feature store `{store.uri}` {manifest}."
    )


def test_runs_filter_by_the_store_they_used(uri: str) -> None:
    runs = {}
    for name, manifest in (("a", MANIFEST_ID), ("b", "f" * 64)):
        runs[name] = tracking.start_run("test-tracking", name, params={}, uri=uri)
        tracking.record_training_run(runs[name], "demo", Store("s3://bucket/store", manifest))
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("test-tracking").experiment_id
    digest = MANIFEST_ID[: tracking.DIGEST_CHARS]
    found = client.search_runs([experiment], filter_string=f"dataset.digest = '{digest}'")
    assert [run.info.run_id for run in found] == [runs["a"]]
    (logged,) = found[0].inputs.dataset_inputs
    assert logged.dataset.source_type == "s3"


def test_a_trial_names_its_sweep_and_a_seed_run_its_parent(uri: str) -> None:
    store = Store("data/demo/store")
    for kind_tag, lead in (("vavl.kind", "Trial of sweep"), ("vavl.run_kind", "Seed run of")):
        kind = "sweep" if kind_tag == "vavl.kind" else "multiseed"
        tags = {"vavl.run_name": f"demo-{kind}", kind_tag: kind}
        parent = tracking.start_run("test-tracking", f"demo-{kind}", params={}, tags=tags)
        child = tracking.start_run("test-tracking", "child", params={}, parent_run_id=parent)
        tracking.record_training_run(child, "demo", store, parent, uri=uri)
        note = mlflow.MlflowClient(uri).get_run(child).data.tags[tracking.NOTE]
        assert note.startswith(f"{lead} `demo-{kind}`: recipe `demo` on feature store ")


def test_credentials_never_reach_the_recorded_source(uri: str) -> None:
    run_id = tracking.start_run("test-tracking", "run", params={}, uri=uri)
    tracking.log_store(run_id, "s3://key:secret@bucket/store?token=x", MANIFEST_ID, uri=uri)
    (logged,) = mlflow.MlflowClient(uri).get_run(run_id).inputs.dataset_inputs
    assert json.loads(logged.dataset.source)["uri"] == "s3://bucket/store"


def test_warnings_during_a_run_go_to_its_log_artifact_and_still_to_the_console(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = tracking.start_run("test-tracking", "run-log", params={}, uri=uri)
    closed = logging.getLogger("test_tracking.closed")  # as Ray's and MLflow's loggers are
    closed.propagate = False
    screen = io.StringIO()
    console = logging.StreamHandler(screen)
    closed.addHandler(console)
    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: shown.append(str(message)))
    monkeypatch.setattr(warnings, "filters", [])  # every warning shows, whatever pytest set
    try:
        with (
            pytest.raises(RuntimeError, match="boom"),
            tracking.recorded_warnings(run_id, uri=uri) as recorded,
        ):
            logging.getLogger("vavl.test").warning("ours: %d workers", 2)
            logging.getLogger("vavl.test").info("an info line stays out")
            closed.warning("theirs, past a logger that does not propagate")
            warnings.warn("a Python warning", UserWarning, stacklevel=1)
            raise RuntimeError("boom")  # the log is still logged when the run fails
    finally:
        closed.removeHandler(console)
    logged = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=tracking.RUN_LOG, tracking_uri=uri, dst_path=tmp_path
        )
    ).read_text()
    lines = logged.splitlines()
    assert any(line.endswith("WARNING vavl.test: ours: 2 workers") for line in lines)
    assert any("WARNING test_tracking.closed: theirs, past" in line for line in lines)
    assert any(
        "WARNING py.warnings:" in line and "UserWarning: a Python warning" in line for line in lines
    )
    assert "info line" not in logged
    assert sum(" WARNING " in line for line in lines) == 3
    # The console keeps what it showed.
    assert "theirs, past a logger" in screen.getvalue() and shown == ["a Python warning"]
    # Nothing stays attached once the run's block ends.
    root = logging.getLogger().handlers
    assert not any(getattr(h, "baseFilename", None) == str(recorded) for h in root)
    assert closed.handlers == []
