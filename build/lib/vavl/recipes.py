"""Experiment recipes by path or by name.

`--config` takes a YAML path, or the name of a recipe shipped with the package (`demo`,
`crema-d`, ...: the files of the checkout's `configs/`, installed as `vavl._recipes`), so the
same command works in a checkout and after `pip install`. A path that exists always wins.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vavl.config import ConfigError

SUFFIX = ".yaml"


def shipped() -> dict[str, Path]:
    """Name -> path of every recipe shipped with the package."""
    root = resources.files("vavl._recipes")
    return {
        entry.name.removesuffix(SUFFIX): Path(str(entry))
        for entry in root.iterdir()
        if entry.name.endswith(SUFFIX)
    }


def resolve_recipe(given: str | Path) -> Path:
    """The recipe file `given` names: the path itself if it exists, else the shipped recipe of
    that name (`demo`, `demo.yaml` and `configs/demo.yaml` all name `demo`)."""
    path = Path(given)
    if path.is_file():
        return path
    found = shipped()
    name = path.name.removesuffix(SUFFIX)
    if path.parent in (Path("."), Path("configs")) and name in found:
        return found[name]
    raise ConfigError(
        f"config file {given} does not exist, and no recipe of that name ships with the "
        f"package ({', '.join(sorted(found))})"
    )


def demo_recipe() -> Path:
    return resolve_recipe("demo")
