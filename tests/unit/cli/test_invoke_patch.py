"""The two patches on invoke's parser (ci_images.cli.invoke_patch), run through invoke's own Program: they fail here
first when an invoke release moves the internals they patch, and pyproject.toml bounds invoke to what passes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import invoke
import pytest
from invoke.collection import Collection
from invoke.parser.parser import ParseMachine
from invoke.program import Program
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ci_images.cli import invoke_patch
from ci_images.cli.invoke_door import invoke_task
from ci_images.cli.table import Command
from ci_images.commands.options import Option
from ci_images.commands.values import globs

ROOT = Path(__file__).resolve().parents[3]
RAN: list[object] = []


class Settings:
    def __init__(self, *, images: tuple[str, ...] = (), name: str | None = None, env: object = None) -> None:
        self.images = images
        self.name = name


TABLE = (
    Option("images", "globs", frozenset({"try"}), kind="list", metavar="GLOB", convert=globs),
    Option("name", "a value", frozenset({"try"})),
)
COMMAND = Command(
    "try", RAN.append, "A task with a list flag and a value flag.", settings=Settings, table=TABLE
)


def invoke_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    invoke_patch.install()
    program = Program(namespace=Collection(invoke_task(COMMAND)), name="invoke", binary="invoke")
    try:
        program.run(["invoke", *argv])
    except SystemExit as exited:
        return int(exited.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_a_list_flag_without_a_value_is_an_error_not_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = invoke_exit(["try", "--images"], capsys)
    assert (code, err.strip()) == (
        2,
        "error: argument --images: expected one argument (see `invoke --help try`)",
    )
    code, err = invoke_exit(["try", "--images", "--name", "x"], capsys)
    assert code == 2 and "argument --images: expected one argument" in err
    assert RAN == []


def test_an_unknown_flag_exits_2_in_argparses_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = invoke_exit(["try", "--nope"], capsys)
    assert (code, err.strip()) == (2, "error: unrecognized arguments: --nope (see `invoke --help try`)")


def test_a_value_for_the_list_flag_runs_the_task(capsys: pytest.CaptureFixture[str]) -> None:
    RAN.clear()
    code, _ = invoke_exit(["try", "--images", "vault,kms", "--images", "x"], capsys)
    assert code == 0
    (settings,) = RAN
    assert isinstance(settings, Settings) and settings.images == ("vault", "kms", "x")


def test_an_invoke_without_the_patched_internals_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(ParseMachine, "complete_flag")
    with pytest.raises(invoke_patch.InvokeChanged, match=r"ParseMachine\.complete_flag"):
        invoke_patch._check_internals()


def test_pyproject_bounds_invoke_to_the_release_tested_here() -> None:
    """The releases these tests ran on are the ones pyproject.toml allows; a newer invoke needs them run first."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (requirement,) = [r for r in project["dependencies"] if re.match(r"invoke\b", r)]
    specifier = SpecifierSet(requirement.removeprefix("invoke"))
    assert any(clause.operator == "<" for clause in specifier), requirement
    assert Version(invoke.__version__) in specifier
