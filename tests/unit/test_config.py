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


def test_every_recipe_loads() -> None:
    recipes = sorted((REPO / "configs").rglob("*.yaml"))
    names = {p.relative_to(REPO / "configs").as_posix() for p in recipes}
    assert {"demo.yaml", "crema-d.yaml", "msp-improv.yaml"} <= names
    for path in recipes:
        cfg = load_config(path)
        assert isinstance(cfg, ExperimentConfig)
        first_line = path.read_text().splitlines()[0]
        assert first_line.startswith("# ") and "python" in first_line, f"{path}: no run command"
