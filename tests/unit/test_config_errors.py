"""Config mistakes fail fast and clearly: YAML errors name file/--set item, line and column,
str fields take numeric-looking values, and the command lines exit 2 before importing torch,
Ray or MLflow (so no Ray session starts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import run_probed
from vavl.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[2]


def recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_yaml_syntax_error_in_a_recipe_names_file_line_and_column(tmp_path: Path) -> None:
    path = recipe(tmp_path, "name: x\noptim:\n  betas: [0.9\n  epochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"config file {path}: not valid YAML at line 4, column 9" in message
    assert "flow sequence" in message


def test_yaml_syntax_error_in_a_set_value_names_the_item_and_column() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["optim.lr=1e-4", "optim.betas=[0.9"])
    # The column counts from the start of the --set item: "[0.9" ends at column 16.
    assert "--set optim.betas=[0.9: not valid YAML at line 1, column 17" in str(err.value)


def test_bad_keys_in_overrides_are_named() -> None:
    with pytest.raises(ConfigError, match=r"override 'optim\.\.lr=1': empty key"):
        load_config(overrides=["optim..lr=1"])
    with pytest.raises(ConfigError, match=r"'name' is a value, not a section"):
        load_config(overrides=["name=x", "name.y=1"])


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping, got list"):
        load_config(recipe(tmp_path, "- 1\n- 2\n"))


def test_str_fields_take_numeric_looking_values_as_written(tmp_path: Path) -> None:
    path = recipe(
        tmp_path,
        "name: 2024\ntrain:\n  experiment: 0123\n  register_model: 1.10\n  storage_path: yes\n",
    )
    cfg = load_config(path)
    assert cfg.name == "2024"
    assert cfg.train.experiment == "0123"  # not YAML's octal 83
    assert cfg.train.register_model == "1.10"  # not the float 1.1
    assert cfg.train.storage_path == "yes"  # not True
    cfg = load_config(overrides=["train.experiment=2024", "name=2024-01-01"])
    assert (cfg.train.experiment, cfg.name) == ("2024", "2024-01-01")
    assert load_config(overrides=["train.register_model=null"]).train.register_model is None


def test_numbers_stay_numbers_and_quoted_strings_stay_as_quoted(tmp_path: Path) -> None:
    cfg = load_config(recipe(tmp_path, "name: '007'\ntrain:\n  seed: 7\n"), ["optim.lr=1e-4"])
    assert (cfg.name, cfg.train.seed, cfg.optim.lr) == ("007", 7, 1e-4)
    with pytest.raises(ConfigError, match=r"train\.workers: Input should be a valid integer"):
        load_config(overrides=["train.workers=two"])


def test_an_override_replaces_what_the_recipe_wrote_under_it(tmp_path: Path) -> None:
    path = recipe(tmp_path, "train:\n  experiment: 0123\n")
    cfg = load_config(path, ["train={experiment: 42, seed: 1}"])
    assert cfg.train.experiment == "42" and cfg.train.seed == 1


def test_trees_from_elsewhere_get_strings_for_str_fields_too() -> None:
    cfg = validate_config({"name": 7, "train": {"experiment": 2024}})
    assert (cfg.name, cfg.train.experiment) == ("7", "2024")


def test_validation_errors_name_the_line_or_override_that_set_the_field(tmp_path: Path) -> None:
    path = recipe(tmp_path, "name: x\noptim:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=rf"optim\.lr: .*greater than 0 \({path}, line 3\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"train\.workers: .* \(--set train\.workers=0\)"):
        load_config(path, ["optim.lr=1e-3", "train.workers=0"])


def test_the_config_module_imports_no_torch_ray_or_mlflow() -> None:
    code = "import sys, vavl.config; print(sorted({'torch', 'ray', 'mlflow'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "[]"


def _probed(tmp_path: Path, script: str, *args: str) -> tuple[int, str, list[str]]:
    """Exit status, stderr and the heavy libraries imported by `python SCRIPT ARGS`."""
    run = run_probed(tmp_path, script, *args)
    return run.status, run.stderr, run.imported


@pytest.mark.parametrize(
    "script", ["pipelines/train.py", "tuning/learning_rate.py", "tuning/loss_weights.py"]
)
def test_a_broken_recipe_exits_2_naming_where_before_any_heavy_import(
    tmp_path: Path, script: str
) -> None:
    path = recipe(tmp_path, "name: demo\ntrain:\n  workers: [2\n")
    status, stderr, imported = _probed(tmp_path, script, "--config", str(path))
    assert status == 2
    assert f"config file {path}: not valid YAML at line 4, column 1" in stderr
    assert "Traceback" not in stderr
    assert imported == []  # no torch, Ray or MLflow: no Ray session started


def test_a_broken_set_value_and_a_bad_field_exit_2_before_any_heavy_import(
    tmp_path: Path,
) -> None:
    demo = "configs/demo.yaml"
    status, stderr, imported = _probed(
        tmp_path, "pipelines/train.py", "--config", demo, "--set", "optim.betas=[0.9"
    )
    assert status == 2 and imported == []
    assert "--set optim.betas=[0.9: not valid YAML at line 1, column 17" in stderr
    status, stderr, imported = _probed(
        tmp_path, "pipelines/train.py", "--config", demo, "--set", "train.workers=0"
    )
    assert status == 2 and imported == []
    assert "train.workers: Input should be greater than or equal to 1" in stderr
    status, stderr, imported = _probed(
        tmp_path, "pipelines/train.py", "--config", demo, "--seeds", "0,x"
    )
    assert status == 2 and imported == [] and "--seeds '0,x'" in stderr


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("pipelines/evaluate.py", ["--drop", "sideways"], "--drop 'sideways'"),
        ("pipelines/evaluate.py", ["--missing-share", "0,2"], "shares lie in [0, 1]"),
        ("pipelines/predict.py", ["--out", "p.parquet", "--actors", "0"], "--actors 0"),
    ],
)
def test_bad_evaluate_and_predict_arguments_exit_2_before_any_heavy_import(
    tmp_path: Path, script: str, args: list[str], message: str
) -> None:
    common = ["--model", "runs:/abc/model", "--store", str(tmp_path / "store")]
    status, stderr, imported = _probed(tmp_path, script, *common, *args)
    assert status == 2 and message in stderr and imported == []
