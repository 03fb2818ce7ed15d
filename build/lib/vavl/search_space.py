"""Search-space parameters, stated once and handed both to Ray Tune and to Optuna's plots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def tune(self) -> Any:
        from ray import tune

        return (
            tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)
        )

    def optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def tune(self) -> Any:
        from ray import tune

        return tune.choice(list(self.options))

    def optuna(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.options))


Param = Float | Choice
SearchSpace = dict[str, Param]  # dotted config path -> parameter


def describe(space: SearchSpace) -> dict[str, str]:
    """Readable search-space entries for the sweep's MLflow params."""
    out = {}
    for path, param in space.items():
        if isinstance(param, Float):
            scale = "log" if param.log else "linear"
            out[f"space.{path}"] = f"{param.low:g}..{param.high:g} ({scale})"
        else:
            out[f"space.{path}"] = "|".join(str(o) for o in param.options)
    return out


def contains(param: Float | Choice, value: Any) -> bool:
    """Whether `value` is a point of the parameter's range or one of its options."""
    if isinstance(param, Float):
        return isinstance(value, int | float) and param.low <= value <= param.high
    return value in param.options


def recipe_point(space: SearchSpace, config_tree: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe's own values of the searched dotted paths, or None when any lies outside
    the space (a starting point Optuna would reject)."""
    point = {}
    for path, param in space.items():
        node: Any = config_tree
        for key in path.split("."):
            node = node[key]
        if not contains(param, node):
            return None
        point[path] = node
    return point
