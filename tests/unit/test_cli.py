"""Every command line documents itself and keeps its word: each flag has help (with its default
where it takes a value), the epilogue gives examples and the exit codes, `--version` prints the
installed version, `--print-config` prints the resolved recipe without starting Ray, and the
exit status is 0, 2 for bad input and 1 for a bug."""

from __future__ import annotations

import argparse
import importlib
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tests.factories import run_probed
from vavl import cli
from vavl.config import ConfigError, validate_config
from vavl.store import StoreError

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
COMMANDS = sorted(name.removeprefix("vavl-") for name in SCRIPTS)
RECIPE_COMMANDS = ("train", "sweep", "demo")  # those that resolve a recipe


def command_main(name: str) -> Callable[[list[str]], int]:
    return importlib.import_module(f"vavl.commands.{name}").main


def parser_of(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser the command builds (through `cli.parser`, which this also checks)."""
    made: list[argparse.ArgumentParser] = []
    real = cli.parser

    def recording(*args, **kwargs) -> argparse.ArgumentParser:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(cli, "parser", recording)
    with pytest.raises(SystemExit) as done:
        command_main(name)(["--help"])
    assert done.value.code == 0
    assert len(made) == 1, f"vavl-{name} does not build its parser with vavl.cli.parser"
    return made[0]


def test_the_commands_are_found() -> None:
    assert COMMANDS == [
        "demo",
        "evaluate",
        "featurize",
        "ingest",
        "predict",
        "sweep",
        "synthesize",
        "train",
    ]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_has_help_and_every_value_its_default(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = parser_of(name, monkeypatch)
    formatter = parser._get_formatter()
    # One of a required group of alternatives (--audio or --no-audio) is required in its way.
    chosen = [g._group_actions for g in parser._mutually_exclusive_groups if g.required]
    alternatives = {id(action) for group in chosen for action in group}
    for action in parser._actions:
        flag = "/".join(action.option_strings) or action.dest
        text = formatter._expand_help(action) if action.help else ""
        assert text.strip(), f"vavl-{name} {flag} has no help"
        takes_value = action.option_strings and action.nargs != 0
        if takes_value and not action.required and id(action) not in alternatives:
            said = "default" in text or "required with" in text
            assert said, f"vavl-{name} {flag}: help names no default: {text!r}"
    shown = capsys.readouterr().out
    assert "examples:\n  " in shown
    assert "exit status:" in shown
    for code in ("0  success", "2  bad input", "1  internal error"):
        assert code in shown, f"vavl-{name} --help does not state exit status {code!r}"
    for flag in ("--version", *(["--print-config"] if name in RECIPE_COMMANDS else [])):
        assert flag in shown, f"vavl-{name} has no {flag}"


def test_the_evaluate_description_says_what_it_reads_and_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    description = parser_of("evaluate", monkeypatch).description
    for part in ("Reads:", "Writes:", "MLflow run", "vavl.evaluates", "robustness.csv"):
        assert part in description


def test_resume_says_the_run_is_named_and_where_the_name_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = parser_of("train", monkeypatch)
    (resume,) = [a for a in parser._actions if "--resume" in a.option_strings]
    assert resume.metavar == "RUN"
    assert "run name" in resume.help and "MLflow UI" in resume.help


@pytest.mark.parametrize("name", COMMANDS)
def test_version_is_the_installed_distributions(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        command_main(name)(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.split()[-1] == metadata.version(cli.DISTRIBUTION)


def _probed(tmp_path: Path, script: str, *args: str) -> tuple[int, str, list[str]]:
    """Exit status, stdout and the heavy libraries imported by `python SCRIPT ARGS`."""
    run = run_probed(tmp_path, script, *args)
    return run.status, run.stdout, run.imported


@pytest.mark.parametrize(
    ("script", "flag"),
    [("pipelines/train.py", "--workers"), ("tuning/loss_weights.py", "--concurrent")],
)
def test_print_config_prints_the_resolved_recipe_and_starts_nothing(
    tmp_path: Path, script: str, flag: str
) -> None:
    args = ["--config", "demo", "--set", "optim.epochs=3", flag, "1", "--print-config"]
    status, out, imported = _probed(tmp_path, script, *args)
    assert status == 0 and imported == []  # no torch, Ray or MLflow: nothing started
    cfg = validate_config(yaml.safe_load(out), source="--print-config")
    assert cfg.optim.epochs == 3
    assert (cfg.train.workers if flag == "--workers" else cfg.tune.concurrent) == 1


def test_the_demo_prints_its_config_with_its_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--set", "optim.epochs=2", "--print-config"]
    assert command_main("demo")(argv) == 0
    cfg = validate_config(yaml.safe_load(capsys.readouterr().out), source="--print-config")
    assert cfg.optim.epochs == 2 and cfg.data.store == str(tmp_path / "store")
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("name", RECIPE_COMMANDS)
def test_a_bad_recipe_or_override_exits_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path)] if name == "demo" else ["--config", "no-such-recipe"]
    if name != "demo":
        assert command_main(name)(argv) == cli.BAD_INPUT
        assert "no-such-recipe does not exist" in capsys.readouterr().err
    argv = [*(["--config", "demo"] if name != "demo" else argv), "--set", "optim.epochz=3"]
    assert command_main(name)(argv) == cli.BAD_INPUT
    err = capsys.readouterr().err
    assert "optim.epochz: unknown key" in err and "Traceback" not in err
    assert not (tmp_path / "corpus").exists()  # the demo refused before any work


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConfigError("train.workers=0: must be >= 1"), cli.BAD_INPUT),
        (StoreError("data/x has no manifest.json"), cli.BAD_INPUT),
        (KeyError("a bug"), cli.INTERNAL_ERROR),
    ],
)
def test_run_turns_an_exception_into_the_exit_status(
    error: Exception, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def work() -> int:
        raise error

    assert cli.run(work) == status
    err = capsys.readouterr().err
    if status == cli.BAD_INPUT:
        assert err == f"error: {error}\n"
    else:
        assert "Traceback" in err and "internal error (KeyError)" in err
    assert cli.run(lambda: 0) == cli.OK
    assert cli.run(work, bad_input=(type(error),)) == cli.BAD_INPUT
