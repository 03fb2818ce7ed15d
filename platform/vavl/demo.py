"""The main job end to end on embedded defaults: synthesise a corpus, ingest it with Ray Data,
train with Ray Train DDP, and compare the test scores with the corpus's ideal scores.

Everything lands under one folder (default `data/demo`) and in the MLflow store named by
MLFLOW_TRACKING_URI (default `./mlflow.db`). A second run replaces the corpus, the store and the
checkpoints of the first; MLflow keeps both runs side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vavl.config import CONDITIONS, ExperimentConfig, load_config
from vavl.inference import open_model
from vavl.recipes import demo_recipe
from vavl.robustness import EvaluationReport, evaluate_store
from vavl.runtime import ensure_ray
from vavl.search_space import SearchSpace
from vavl.store import IngestReport, ingest_corpus_folder
from vavl.sweep import SweepResult, run_sweep
from vavl.synthetic import CorpusSummary, write_corpus
from vavl.train import TrainResult, fit


@dataclass
class DemoSettings:
    out: Path = Path("data/demo")
    utterances: int = 600
    unpaired_share: float = 0.33
    audio_dim: int = 64
    visual_dim: int = 48
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    sweep_space: SearchSpace | None = None  # None: no sweep stage
    # Sweep trials train exactly as the main run does (same epochs, hence the same lr schedule),
    # so that the sweep's first trial, the recipe's own weights, is the main run's twin and the
    # tuned weights are compared with the defaults on equal terms.
    sweep_overrides: list[str] = field(default_factory=list)


@dataclass
class DemoReport:
    corpus: CorpusSummary
    ingest: IngestReport
    training: TrainResult
    config: ExperimentConfig
    sweep: SweepResult | None = None
    robustness: EvaluationReport | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def conditions(self) -> list[str]:
        """The conditions the trained model was scored in, CONDITIONS order: those its store
        has (all three for the demo corpus; one for an audio-only or visual-only store)."""
        found = {key.split("/")[1] for key in (*self.training.dev, *self.training.test)}
        return [c for c in CONDITIONS if c in found]


def write_demo_corpus(settings: DemoSettings, root: Path) -> CorpusSummary:
    """The demo's synthetic corpus at ROOT/corpus (replacing an earlier one)."""
    return write_corpus(
        root / "corpus",
        utterances=settings.utterances,
        seed=settings.seed,
        audio_dim=settings.audio_dim,
        visual_dim=settings.visual_dim,
        unpaired_share=settings.unpaired_share,
        overwrite=True,
    )


def ingest_demo_corpus(root: Path) -> IngestReport:
    """ROOT/corpus ingested into the store ROOT/store (replacing an earlier one)."""
    return ingest_corpus_folder(
        root / "corpus", str(root / "store"), overwrite=True, shard_rows=128
    )


def demo_configs(settings: DemoSettings) -> tuple[ExperimentConfig, ExperimentConfig | None]:
    """The demo recipe with the demo's paths and `settings.overrides`, for the training run and
    (with a sweep space) for the sweep's trials: ConfigError on a bad override."""
    root = settings.out.resolve()
    paths = [f"data.store={root / 'store'}", f"train.storage_path={root / 'runs'}"]
    cfg = load_config(demo_recipe(), [*paths, *settings.overrides])
    if settings.sweep_space is None:
        return cfg, None
    sweep_paths = [*paths, f"tune.storage_path={root / 'sweeps'}"]
    sweep = load_config(
        demo_recipe(), [*sweep_paths, *settings.overrides, *settings.sweep_overrides]
    )
    return cfg, sweep


def run_demo(settings: DemoSettings, say: Callable[[str], None] = print) -> DemoReport:
    stages: dict[str, float] = {}

    def stage(name: str, work: Callable[[], object]) -> object:
        say(f"\n== {name}")
        started = time.perf_counter()
        result = work()
        stages[name] = time.perf_counter() - started
        say(f"   {name} took {stages[name]:.1f} s")
        return result

    root = settings.out.resolve()
    cfg, sweep_cfg = demo_configs(settings)  # a bad --set fails here, before any work
    corpus = stage(
        "synthesise",
        lambda: write_demo_corpus(settings, root),
    )
    ensure_ray()
    ingest = stage(
        "ingest",
        lambda: ingest_demo_corpus(root),
    )
    say(ingest.summary_table())
    training = stage("train", lambda: fit(cfg))
    sweep = None
    if settings.sweep_space and sweep_cfg is not None:
        name = f"demo-weights-{time.strftime('%Y%m%d-%H%M%S')}"
        sweep = stage(
            "sweep",
            lambda: run_sweep(
                sweep_cfg,
                settings.sweep_space,
                name=name,
                trials=sweep_cfg.tune.trials,
                concurrent=sweep_cfg.tune.concurrent,
                recipe_dir=root / "tuned",
            ),
        )
    best_model = sweep.best_checkpoint if sweep else training.model_uri
    robustness = stage(
        "evaluate",
        lambda: evaluate_store(open_model(best_model), str(root / "store"), resamples=200),
    )
    return DemoReport(corpus, ingest, training, cfg, sweep, robustness, stages)
