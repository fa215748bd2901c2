"""Door 2: the invoke tasks (``invoke COMMAND``), one Task per command of the table, whose arguments are exactly the
command's options; tasks.py builds its collection with ``invoke_collection()``."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ci_images.cli import invoke_patch
from ci_images.cli.runner import run
from ci_images.cli.table import COMMANDS, Command
from ci_images.commands.options import Option

if TYPE_CHECKING:
    from invoke.collection import Collection
    from invoke.tasks import Task


def _invoke_default(option: Option) -> object:
    return {"flag": False, "list": [], "optional": None, "value": None}[option.kind]


def invoke_task(command: Command[Any]) -> Task[Any]:
    """An invoke Task for ``command`` whose arguments are the command's options, exactly as argparse has them."""
    from invoke.exceptions import Exit
    from invoke.tasks import Task

    def body(c: object, **given: object) -> None:
        code = run(command, given)
        if code:
            raise Exit(code=code)  # the message is printed already (redacted): Exit must not print it again

    body.__doc__ = command.summary
    parameters = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [
        inspect.Parameter(
            option.attr, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_invoke_default(option)
        )
        for option in command.options
    ]
    body.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return Task(
        body,
        name=command.name,
        help={option.attr: option.help_text for option in command.options},
        iterable=[option.attr for option in command.options if option.kind == "list"],
        optional=[option.attr for option in command.options if option.kind == "optional"],
        auto_shortflags=False,  # long options only, as on the other door
    )


def invoke_collection(commands: Sequence[Command[Any]] = COMMANDS) -> Collection:
    from invoke.collection import Collection

    invoke_patch.install()
    return Collection(*(invoke_task(command) for command in commands))
