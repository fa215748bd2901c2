"""Door 1: ``python -m ci_images COMMAND [--option ...]``, which the nox sessions run; argparse, made from the
command table, every usage error one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ci_images.cli.runner import run
from ci_images.cli.table import COMMANDS, Command
from ci_images.errors import UsageError

PROG = "python -m ci_images"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(UsageError.exit_code)


DESCRIPTION = (
    "Build, smoke-test, push and sign CI service images as images.yaml describes them. "
    "`COMMAND --help` lists a command's options; `invoke COMMAND` is the same command."
)


def build_parser(
    commands: Sequence[Command[Any]] = COMMANDS, prog: str = PROG, description: str = DESCRIPTION
) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in commands:
        one = sub.add_parser(
            command.name, aliases=command.aliases, help=command.summary, description=command.summary
        )
        one.set_defaults(command=command.name)
        for option in command.options:
            flag = f"--{option.name}"
            if option.kind == "flag":
                one.add_argument(flag, dest=option.attr, action="store_true", help=option.help_text)
            elif option.kind == "list":
                one.add_argument(
                    flag,
                    dest=option.attr,
                    action="append",
                    default=[],
                    metavar=option.metavar,
                    help=option.help_text,
                )
            elif option.kind == "optional":
                one.add_argument(
                    flag,
                    dest=option.attr,
                    nargs="?",
                    const=True,
                    metavar=option.metavar,
                    help=option.help_text,
                )
            else:
                one.add_argument(flag, dest=option.attr, metavar=option.metavar, help=option.help_text)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    commands: Sequence[Command[Any]] = COMMANDS,
    prog: str = PROG,
    description: str = DESCRIPTION,
) -> int:
    parser = build_parser(commands, prog, description)
    parsed, extra = parser.parse_known_args(argv)
    args = vars(parsed)
    by_name = {command.name: command for command in commands}
    command = by_name[args.pop("command")]
    if extra:  # argparse would point at the top-level help, which does not list this command's options
        _Parser(prog=f"{prog} {command.name}").error(f"unrecognized arguments: {' '.join(extra)}")
    return run(command, args)
