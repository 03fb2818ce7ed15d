"""What every command line shares: its parser (help with defaults, examples and exit codes in
the epilogue, `--version`), the recipe flags (`--config`, `--set`, `--print-config`) and one
place that turns an exception into the exit status.

Exit status of every `vavl-*` command: 0 success, 2 bad input (a flag, recipe, store or model,
named on stderr, as argparse does for a bad flag), 1 internal error (a bug: the traceback is
printed). Imports only the standard library and `vavl.config` (yaml, pydantic), so that `--help`,
`--version`, `--print-config` and a bad recipe answer in a second, before torch, Ray or MLflow.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

from vavl.config import ExperimentConfig, load_config

SUPPRESS = argparse.SUPPRESS

OK, INTERNAL_ERROR, BAD_INPUT = 0, 1, 2
DISTRIBUTION = "vavl-platform"  # [project] name in pyproject.toml
EXIT_CODES = """exit status:
  0  success
  2  bad input: a flag, recipe, store or model (stderr names it and why)
  1  internal error: a bug (the traceback is printed)"""
# The exceptions that mean "the input is wrong", by module: a module not imported yet cannot
# have raised its error, so checking needs no import (and so no torch) at all.
BAD_INPUT_ERRORS = (
    ("vavl.config", "ConfigError"),
    ("vavl.storage", "StorageError"),
    ("vavl.store.schema", "StoreError"),
    ("vavl.inference.loading", "InferenceError"),
)


def version() -> str:
    """The installed distribution's version (the package's own when run from a bare checkout)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import vavl

        return vavl.__version__


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilogue as written (examples keep their lines); every option's help
    ends with its default unless it has none or the help already says what it is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default == [] or default is SUPPRESS
        if "default" in text or not action.option_strings or nothing:
            return text
        return f"{text} (default: %(default)s)"


def parser(description: str, examples: Sequence[str], **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser: `description`, then `examples` and the exit codes in the epilogue,
    and `--version`."""
    epilog = "\n".join(["examples:", *(f"  {line}" for line in examples), "", EXIT_CODES])
    made = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=HelpFormatter, **kwargs
    )
    made.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version"
    )
    return made


def add_recipe_arguments(made: argparse.ArgumentParser, set_help: str) -> None:
    """`--config`, `--set` and `--print-config` (`recipe` resolves them)."""
    made.add_argument(
        "--config",
        required=True,
        metavar="RECIPE",
        help="recipe: a YAML path, or the name of a shipped recipe (demo, crema-d, ...)",
    )
    add_set_argument(made, set_help)
    add_print_config(made)


def add_set_argument(made: argparse.ArgumentParser, set_help: str) -> None:
    made.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{set_help}; repeatable, applied after the recipe (none by default)",
    )


def add_print_config(made: argparse.ArgumentParser) -> None:
    made.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved recipe (after --set and the flags above) as YAML and exit, "
        "starting nothing",
    )


def add_quiet(made: argparse.ArgumentParser, what: str) -> None:
    """`--quiet`: no progress while the command works (the closing summary still prints)."""
    made.add_argument(
        "--quiet",
        action="store_true",
        help=f"no progress ({what}: a live line on a terminal, a plain line every "
        "30 s elsewhere); the summary still prints",
    )


def recipe(args: argparse.Namespace, flags: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The validated config of `--config` with `--set`, then the command's own flags (config path
    -> value; None: not given) applied on top. A mistake is a ConfigError (exit 2)."""
    given = {path: value for path, value in (flags or {}).items() if value is not None}
    return load_config(args.config, [*args.set, *(f"{k}={v}" for k, v in given.items())])


def print_config(cfg: ExperimentConfig) -> int:
    print(cfg.to_yaml(), end="")
    return OK


def is_bad_input(err: BaseException) -> bool:
    for module_name, class_name in BAD_INPUT_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(err, getattr(module, class_name)):
            return True
    return False


def run(
    work: Callable[[], int],
    *,
    bad_input: tuple[type[BaseException], ...] = (),
    prefix: str = "error",
) -> int:
    """`work()`'s status, or the status its exception means: 2 (message on stderr) for bad input
    (the errors of `BAD_INPUT_ERRORS` and the command's own `bad_input`), else 1 with the
    traceback. Ctrl-C and SystemExit pass through."""
    try:
        return work()
    except Exception as err:
        if isinstance(err, bad_input) or is_bad_input(err):
            print(f"{prefix}: {err}", file=sys.stderr)
            return BAD_INPUT
        traceback.print_exc()
        print(
            f"internal error ({type(err).__name__}): a bug, not a mistake in the input; "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
