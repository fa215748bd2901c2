"""Both doors, `python -m ci_images` and invoke, against each other: the same options, the same checks, the same
exit codes, the same redaction. No engine and no network: every case here stops before either is touched."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ci_images.cli import invoke_door, table
from ci_images.cli.argv import build_parser
from ci_images.commands.options import OPTIONS, PUSH
from ci_images.lab.cli import LAB_COMMANDS
from tests.doors import MAIN, clean_env, run_door

SECRET = "hunter2-Zq8xW-secret"


def door(kind: str, argv: Sequence[str], **env: str) -> subprocess.CompletedProcess[str]:
    return run_door(kind, argv, clean_env(**env))


def argparse_options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        flag.removeprefix("--")
        for action in sub.choices[command]._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    }


def invoke_options(task: object) -> set[str]:
    return {name for argument in task.get_arguments() for name in argument.names}  # type: ignore[attr-defined]


@pytest.mark.parametrize("commands", [table.COMMANDS, LAB_COMMANDS], ids=["product", "lab"])
def test_every_command_has_the_same_options_on_both_doors(commands: tuple[table.Command[Any], ...]) -> None:
    parser = build_parser(commands)
    namespace = invoke_door.invoke_collection(commands)
    assert set(namespace.task_names) == {c.name for c in commands}
    for command in commands:
        from_table = {option.name for option in command.options}
        assert argparse_options(parser, command.name) == from_table, command.name
        assert invoke_options(namespace[command.name]) == from_table, command.name


def test_the_parity_check_sees_an_option_added_to_one_door_only() -> None:
    """The check above compares what each door really parses, not the table with itself."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices[PUSH].add_argument("--sneaked-in")
    namespace = invoke_door.invoke_collection()
    assert argparse_options(parser, PUSH) != invoke_options(namespace[PUSH])


def test_ci_takes_push_images_options_plus_its_modes() -> None:
    """`nox -s ci-images -- --help` lists what `invoke push-images --help` lists, and the four CI modes."""
    push = {o.name for o in OPTIONS if PUSH in o.commands}
    ci = {o.name for o in OPTIONS if "ci" in o.commands}
    assert ci - push == {"push", "matrix", "lock-only", "check-public"}
    assert push <= ci


def test_every_option_says_what_it_does() -> None:
    for option in OPTIONS:
        assert option.help and option.commands, option.name
        assert option.name == option.name.lower() and "_" not in option.name


BAD_INPUT = [
    (["push-images", "--jobs", "abc"], "--jobs 'abc': not a whole number"),
    (["push-images", "--jobs", "0"], "--jobs '0': must be 1 or more"),
    (
        ["push-images", "--ratelimit-min-remaining", "-5"],
        "--ratelimit-min-remaining '-5': not a whole number",
    ),
    (["push-images", "--ratelimit-min-remaining", "²"], "--ratelimit-min-remaining '²': not a whole number"),
    (["build-images", "--platform", "linux/amd65"], "unknown architecture 'amd65'"),
    (["list-images", "--images", ""], "--images '': an empty pattern"),
    (["push-images", "--registry", ""], "--registry '': must not be empty"),
    (["push-images", "--json", "/"], "--json '/': is a directory"),
    (["ci", "--matrix", "--push"], "--matrix and --push cannot be used together"),
    (["ci", "--lock-only", "--force"], "--lock-only and --force cannot be used together"),
    (["push-images", "--no-such-flag"], "--no-such-flag"),
    (["push-images", "--jobs"], "--jobs"),
    # invoke alone would take a bare list flag as not given: `--images $EMPTY` would mean every entry.
    (["push-images", "--images"], "argument --images: expected one argument"),
    (["push-images", "--images", "--dry-run"], "argument --images: expected one argument"),
]


@pytest.mark.parametrize(("argv", "says"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
@pytest.mark.parametrize("kind", ["module", "invoke"])
def test_bad_input_exits_2_with_one_line_on_both_doors(kind: str, argv: list[str], says: str) -> None:
    done = door(kind, argv)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]
    assert done.stdout == ""


def test_an_environment_value_is_checked_like_its_option() -> None:
    for kind in ("module", "invoke"):
        done = door(kind, ["push-images"], CI_IMAGES_REGISTRY="no/such host")
        assert done.returncode == 2, done.stderr
        assert "CI_IMAGES_REGISTRY 'no/such host'" in done.stderr


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("kind", ["module", "invoke"])
def test_a_registered_secret_reaches_no_output_on_either_door(kind: str, debug: bool, tmp_path: Path) -> None:
    """The password is registered from the environment before anything runs; an error that quotes it (here: the
    catalog's path and a bad value in it) is redacted in the message and in the --debug traceback alike."""
    folder = tmp_path / SECRET
    folder.mkdir()
    catalog = folder / "images.yaml"
    catalog.write_text(f"registry: {SECRET}/UPPER\nimages: {{}}\n", encoding="utf-8")
    argv = ["list-images", "--catalog", str(catalog), *(["--debug"] if debug else [])]
    done = door(kind, argv, CI_IMAGES_REGISTRY_USER="ci", CI_IMAGES_REGISTRY_PASSWORD=SECRET)
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert "***" in done.stderr
    assert ("Traceback" in done.stderr) is debug


@pytest.mark.parametrize("kind", ["module", "invoke"])
def test_a_closed_standard_output_ends_quietly(kind: str) -> None:
    runner = f"{sys.executable} -m {'invoke' if kind == 'invoke' else 'ci_images'} list-images --json"
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {runner} | head -c 1"],
        cwd=MAIN,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "["
    assert done.stderr == ""


def test_options_have_unique_names_per_command() -> None:
    for command in (*table.COMMANDS, *LAB_COMMANDS):
        names = [o.name for o in command.options]
        assert len(names) == len(set(names)), command.name
