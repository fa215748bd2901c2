"""Where invoke's parser behaves unlike the other door, patched to match, in one place.

Two patches, both on invoke internals (bounded in pyproject.toml to the releases tests/unit/cli/test_invoke_patch.py
covers):

- ``Program.parse_tasks``: invoke exits 1 on an unknown flag or a missing value, where every other bad input exits 2;
  the patch makes it one line, argparse's words, and exit 2.
- ``ParseMachine.complete_flag``: invoke takes a list flag given no value (``--images`` at the end, or before another
  flag) as not given at all, so ``invoke push-images --images $EMPTY`` would publish every entry; the patch makes it
  the error argparse makes.

``install()`` checks that the internals are there before it patches: an invoke release that moved them fails loudly
here, instead of silently dropping the guards.
"""

from __future__ import annotations

import re
from typing import Any

_MARK = "_ci_images"


class InvokeChanged(RuntimeError):
    """This invoke's parser is not the one the patches were written for."""


def plain_parse_error(text: str) -> str:
    """invoke's parser messages in the words argparse uses on the other door."""
    unknown = re.fullmatch(r"No idea what '(.+)' is!", text)
    if unknown:
        return f"unrecognized arguments: {unknown.group(1)}"
    missing = re.fullmatch(
        r"Flag <Argument: (\S+?)(?: \(\S+\))?(?: \[\w+\])?> needed value and was not given one!", text
    )
    if missing:
        return f"argument --{missing.group(1).replace('_', '-')}: expected one argument"
    return text


def _check_internals() -> None:
    import invoke
    from invoke.parser.parser import ParseMachine
    from invoke.program import Program

    missing = [
        name
        for name, owner, attribute in (
            ("Program.parse_tasks", Program, "parse_tasks"),
            ("ParseMachine.complete_flag", ParseMachine, "complete_flag"),
            ("ParseMachine.error", ParseMachine, "error"),
        )
        if not callable(getattr(owner, attribute, None))
    ]
    if missing:
        raise InvokeChanged(
            f"invoke {invoke.__version__} has no {', '.join(missing)}: ci-images' invoke door needs the invoke "
            "releases pyproject.toml names (pip install -c constraints.txt invoke)"
        )


def install() -> None:
    """Patch invoke's parser (once per process)."""
    from invoke.exceptions import Exit, ParseError
    from invoke.parser.parser import ParseMachine
    from invoke.program import Program

    if getattr(Program.parse_tasks, _MARK, False):
        return
    _check_internals()
    parse_tasks = Program.parse_tasks
    complete_flag = ParseMachine.complete_flag

    def parse_tasks_exit_2(self: Any) -> None:
        try:
            parse_tasks(self)
        except ParseError as exc:
            task = getattr(exc.context, "name", None) or "TASK"
            raise Exit(f"error: {plain_parse_error(str(exc))} (see `invoke --help {task}`)", code=2) from exc

    def complete_flag_needs_a_value(self: Any) -> None:
        if self.flag is not None and self.flag.kind is list and not self.flag_got_value:
            self.error(f"Flag {self.flag!r} needed value and was not given one!")
        complete_flag(self)

    setattr(parse_tasks_exit_2, _MARK, True)
    Program.parse_tasks = parse_tasks_exit_2  # type: ignore[method-assign]
    ParseMachine.complete_flag = complete_flag_needs_a_value  # type: ignore[method-assign]
