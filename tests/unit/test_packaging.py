"""What the wheel holds: every package, the recipes as package data, console scripts that
resolve to each command's main, and recipes found by name wherever the command runs."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from vavl.config import ConfigError, load_config
from vavl.recipes import resolve_recipe, shipped

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_names_every_package_and_the_recipes() -> None:
    source = ROOT / "platform"
    found = {
        ".".join(init.parent.relative_to(source).parts)
        for init in source.glob("vavl/**/__init__.py")
    }
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert set(setuptools["packages"]) == found | {"vavl._recipes"}
    assert setuptools["package-dir"]["vavl._recipes"] == "configs"


def test_every_console_script_is_a_commands_main() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    commands = {p.stem for p in (ROOT / "platform/vavl/commands").glob("*.py")} - {"__init__"}
    assert {name.removeprefix("vavl-") for name in scripts} == commands
    for name, target in scripts.items():
        module, function = target.split(":")
        assert function == "main", name
        assert callable(importlib.import_module(module).main), name


def test_every_pipeline_script_runs_its_command() -> None:
    for script in (ROOT / "pipelines").glob("*.py"):
        text = script.read_text()
        assert f"from vavl.commands.{script.stem} import main" in text, script
        assert "sys.exit(main())" in text, script


def test_recipes_resolve_by_path_or_by_name(tmp_path: Path, monkeypatch) -> None:
    assert set(shipped()) == {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    monkeypatch.chdir(tmp_path)  # no configs/ here: names resolve to the shipped files
    for given in ("demo", "demo.yaml", "configs/demo.yaml"):
        assert resolve_recipe(given).read_text() == (ROOT / "configs/demo.yaml").read_text()
    assert load_config("crema-d").name == load_config(ROOT / "configs/crema-d.yaml").name
    own = tmp_path / "demo.yaml"  # a file of the user's wins over a shipped recipe
    own.write_text("name: mine\n")
    assert load_config("demo.yaml").name == "mine"
    with pytest.raises(ConfigError, match=r"does not exist.*\(crema-d, demo, "):
        load_config("nope")
