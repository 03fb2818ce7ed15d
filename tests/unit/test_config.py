from pathlib import Path

import pytest

from vavl.config import ConfigError, ExperimentConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_paper_optimiser() -> None:
    cfg = load_config()
    assert cfg.optim.lr == 5e-5
    assert cfg.optim.betas == (0.95, 0.999)
    assert cfg.model.audio_dim == 1024 and cfg.model.visual_dim == 1408


def test_overrides_parse_yaml_values() -> None:
    cfg = load_config(
        overrides=["model.d_model=256", "loss.residual_weight=0.5", "task.kind=attributes"]
    )
    assert cfg.model.d_model == 256
    assert cfg.loss.residual_weight == 0.5
    assert cfg.task.num_outputs == 3


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model\.d_modle: unknown key"):
        load_config(overrides=["model.d_modle=3"])


def test_bad_literal_names_allowed_values() -> None:
    with pytest.raises(
        ConfigError, match=r"task\.kind: .*'categorical' or 'attributes'.*'regression'"
    ):
        load_config(overrides=["task.kind=regression"])


def test_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="divisible by n_heads"):
        load_config(overrides=["model.d_model=30", "model.n_heads=8"])
    with pytest.raises(ConfigError, match="class_weights has 2 values for 6 classes"):
        load_config(overrides=["task.class_weights=[1, 2]"])
    with pytest.raises(ConfigError, match="greater than or equal to 0"):
        load_config(overrides=["loss.reconstruction_weight=-1"])


def test_malformed_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(overrides=["model.d_model"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_flat_params_use_dotted_paths_and_bare_loss_weights() -> None:
    params = load_config(overrides=["loss.residual_weight=0.25"]).flat_params()
    assert params["model.d_model"] == 512
    assert params["loss.residual_weight"] == 0.25
    assert params["residual_weight"] == 0.25
    assert params["reconstruction_weight"] == 2.0


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(overrides=["optim.epochs=3", "task.labels=hard"])
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


def test_a_model_preset_fills_only_the_sizes_the_config_leaves_out(tmp_path: Path) -> None:
    paper = load_config(overrides=["model.preset=paper"]).model
    assert (paper.branch_layers, paper.shared_layers, paper.head_hidden) == (3, 2, 512)
    mixed = load_config(overrides=["model.preset=paper", "model.branch_layers=1"]).model
    assert (mixed.branch_layers, mixed.shared_layers) == (1, 2)
    default = load_config().model
    assert (default.preset, default.branch_layers, default.shared_layers) == ("default", 2, 1)
    cfg = load_config(overrides=["model.preset=paper", "model.dropout=0.2"])
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg
    assert cfg.flat_params()["model.preset"] == "paper"
    with pytest.raises(ConfigError, match=r"model\.preset: .*'default' or 'paper'.*'huge'"):
        load_config(overrides=["model.preset=huge"])


def test_every_recipe_loads() -> None:
    recipes = sorted((REPO / "configs").rglob("*.yaml"))
    names = {p.relative_to(REPO / "configs").as_posix() for p in recipes}
    assert {"demo.yaml", "crema-d.yaml", "msp-improv.yaml"} <= names
    for path in recipes:
        cfg = load_config(path)
        assert isinstance(cfg, ExperimentConfig)
        first_line = path.read_text().splitlines()[0]
        assert first_line.startswith("# ") and "python" in first_line, f"{path}: no run command"


def test_optimisation_controls_have_modern_defaults() -> None:
    cfg = load_config()
    assert cfg.optim.grad_clip == 1.0
    assert cfg.optim.warmup_epochs == 1.0
    assert cfg.optim.schedule == "cosine"
    assert cfg.optim.min_lr_ratio == 0.05
    assert cfg.optim.plateau_patience == 2
    assert cfg.train.patience == 5
    assert cfg.train.selection_smoothing == 1
    assert cfg.train.selection_key == "dev/mean/macro_f1_smoothed"
    assert "selection_key" not in cfg.model_dump()["train"]  # derived, not a recipe field


def test_optimisation_controls_can_be_switched_off() -> None:
    cfg = load_config(
        overrides=[
            "optim.grad_clip=null",
            "optim.warmup_epochs=0",
            "optim.schedule=constant",
            "train.patience=null",
        ]
    )
    assert cfg.optim.grad_clip is None and cfg.optim.warmup_epochs == 0.0
    assert cfg.optim.schedule == "constant" and cfg.train.patience is None
    smoothed = load_config(
        overrides=["train.selection_metric=dev/av/ccc_mean", "train.selection_smoothing=3"]
    )
    assert smoothed.train.selection_key == "dev/av/ccc_mean_smoothed"
    mean = load_config(overrides=["train.selection_metric=dev/mean/macro_f1"])
    assert mean.train.selection_key == "dev/mean/macro_f1_smoothed"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.schedule=linear", r"optim\.schedule: .*'cosine', 'constant' or 'plateau'"),
        ("optim.warmup_epochs=-1", r"optim\.warmup_epochs: .*greater than or equal to 0"),
        ("optim.warmup_epochs=21", r"warmup_epochs=21 exceeds epochs=20"),
        ("optim.min_lr_ratio=1.5", r"optim\.min_lr_ratio: .*less than or equal to 1"),
        ("optim.min_lr_ratio=-0.1", r"optim\.min_lr_ratio: .*greater than or equal to 0"),
        ("optim.plateau_patience=0", r"optim\.plateau_patience: .*greater than or equal to 1"),
        ("optim.grad_clip=0", r"optim\.grad_clip: .*greater than 0"),
        ("train.patience=0", r"train\.patience: .*greater than or equal to 1"),
        ("train.selection_smoothing=0", r"train\.selection_smoothing: .*greater than or equal"),
        ("train.selection_smoothing=1.5", r"train\.selection_smoothing: .*integer"),
        ("train.selection_metric=dev/median/macro_f1", r"train\.selection_metric: .*mean"),
        ("train.selection_metric=test/av/macro_f1", r"train\.selection_metric: .*pattern"),
    ],
)
def test_optimisation_controls_are_validated(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_warmup_may_fill_a_one_epoch_run() -> None:
    cfg = load_config(overrides=["optim.epochs=1"])  # the default 1.0 warm-up epoch still fits
    assert cfg.optim.warmup_epochs == cfg.optim.epochs


def test_paper_recipes_keep_the_paper_optimiser_and_demo_smooths_selection() -> None:
    for name in ("crema-d", "msp-improv"):
        optim = load_config(REPO / "configs" / f"{name}.yaml").optim
        assert (optim.schedule, optim.warmup_epochs, optim.grad_clip) == ("constant", 0.0, None)
        assert optim.lr == 5e-5 and optim.betas == (0.95, 0.999)
    for name in ("demo", "synthetic-large"):
        assert load_config(REPO / "configs" / f"{name}.yaml").train.selection_smoothing == 3


def test_corpus_recipes_let_the_hardware_choose_precision_and_the_small_ones_keep_fp32() -> None:
    assert load_config().train.precision == "auto"
    for name, want in [("crema-d", "auto"), ("msp-improv", "auto"), ("demo", "fp32")]:
        assert load_config(REPO / "configs" / f"{name}.yaml").train.precision == want, name
    assert load_config(REPO / "configs" / "synthetic-large.yaml").train.precision == "fp32"


def test_normalisation_defaults_to_speakers_and_reads_the_older_booleans() -> None:
    cfg = load_config(None)
    assert cfg.data.normalize == "speaker" and cfg.data.speaker_min_utterances == 5
    assert load_config(None, ["data.normalize=true"]).data.normalize == "global"
    assert load_config(None, ["data.normalize=false"]).data.normalize == "none"
    with pytest.raises(ConfigError, match=r"data\.normalize"):
        load_config(None, ["data.normalize=utterance"])
    with pytest.raises(ConfigError, match=r"data\.speaker_min_utterances"):
        load_config(None, ["data.speaker_min_utterances=0"])


def test_weight_averaging_is_on_by_default_and_null_turns_it_off() -> None:
    assert load_config().optim.ema_epochs == 1.0
    assert load_config(overrides=["optim.ema_epochs=null"]).optim.ema_epochs is None
    assert load_config(overrides=["optim.ema_epochs=0.5"]).optim.ema_epochs == 0.5
    with pytest.raises(ConfigError, match=r"optim\.ema_epochs"):
        load_config(overrides=["optim.ema_epochs=0"])
