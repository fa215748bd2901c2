"""The two doors, both made from one table of commands (here) and one table of options (``ci_images.options``):

- ``python -m ci_images COMMAND [--option ...]``, which the nox sessions run;
- the invoke tasks (``invoke COMMAND``), which tasks.py builds with ``invoke_collection()``.

Both go through ``run()``: secrets from the environment are registered for redaction first, the options are parsed
and checked (exit 2 on bad input, with one line saying what and where), the command runs, and any error is printed
once, redacted, and becomes its own exit code. Tracebacks only with ``--debug``, redacted too.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from ci_images import app, upkeep
from ci_images.errors import CiImagesError, Interrupted, UsageError
from ci_images.log import log, redact
from ci_images.options import OPTIONS, Option, Options, parse

if TYPE_CHECKING:
    from invoke.collection import Collection

PROG = "python -m ci_images"
# Values that must never reach any output, whichever command runs and however it fails.
SECRET_VARIABLES = (
    "CI_IMAGES_REGISTRY_PASSWORD",
    "CI_IMAGES_UPSTREAM_PASSWORD",
    "COSIGN_PASSWORD",
    "GITHUB_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
)


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[Any], object]
    summary: str
    table: tuple[Option, ...] = OPTIONS
    settings: Callable[..., Any] = Options  # what parse() builds from the table's values
    aliases: tuple[str, ...] = ()

    @property
    def options(self) -> tuple[Option, ...]:
        return tuple(option for option in self.table if self.name in option.commands)


def _signing_command(name: str) -> Callable[[Options], object]:
    """A signing command, loaded when it runs: cryptography and PyNaCl stay out of every other command's start."""

    def run(options: Options) -> object:
        from ci_images import signing

        command: Callable[[Options], object] = getattr(signing, name)
        return command(options)

    run.__name__ = name
    return run


COMMANDS: tuple[Command, ...] = (
    Command(
        "list-images",
        app.list_images,
        "List every (image, variant, version) of the catalog: mode, source, target tags and platforms.",
        aliases=("list",),
    ),
    Command(
        "plan",
        app.show_plan,
        "Show what push-images would build, retag or skip, and why (HEAD requests upstream; changes nothing).",
    ),
    Command(
        "build-images",
        app.build_images,
        "Build every entry for every platform; the host's build is tagged with the target tags.",
        aliases=("build",),
    ),
    Command(
        "test-images",
        app.test_images,
        "Smoke-test what build-images left in the engine, on every platform this host can run.",
        aliases=("test",),
    ),
    Command(
        "push-images",
        app.push_images,
        "Build, smoke-test and push what changed as multi-arch indexes; tags move only after full success.",
        aliases=("push",),
    ),
    Command(
        "ci",
        app.ci,
        "CI's job: build and smoke-test; --push also publishes, --matrix prints the plan as a job matrix, "
        "--lock-only writes the lock file from the target.",
    ),
    Command("registry-down", app.registry_down, "Stop the embedded local registry; its data stays."),
    Command(
        "generate-key",
        _signing_command("generate_key"),
        "Write a cosign key pair: cosign.key (encrypted with COSIGN_PASSWORD, mode 0600) and cosign.pub.",
    ),
    Command(
        "sign-images",
        _signing_command("sign_images"),
        "Sign (cosign format) what the catalog's tags point to on the target now and this key has not signed yet.",
    ),
    Command(
        "verify-images",
        _signing_command("verify_images"),
        "Verify every catalog tag on the target: its signature, its payload, and its digest against the lock file.",
    ),
    Command(
        "outdated",
        upkeep.outdated,
        "Per image, the upstream tags newer than its newest cataloged version (tag lists only; exits 0 either way).",
    ),
    Command(
        "bump",
        upkeep.bump,
        "Add the releases `outdated` finds to the catalog, keeping its comments and layout; print the diff.",
    ),
    Command(
        "docs",
        upkeep.docs,
        "Write README's table of every published reference from the catalog; --check only says whether it is current.",
    ),
)


# ---- the one guarded runner ---------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM (CI cancelling a job) unwind the run, so containers it started are removed on the way."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)


def register_secrets(env: Mapping[str, str]) -> None:
    for name in SECRET_VARIABLES:
        log.add_mask(env.get(name))


def _quiet_stdout() -> None:
    """The reader of our standard output went away (``| head -1``): send the rest nowhere, say nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run(command: Command, given: Mapping[str, object], env: Mapping[str, str] | None = None) -> int:
    """Run ``command`` with the values a door parsed; returns the exit code. Nothing it prints carries a secret."""
    env = os.environ if env is None else env
    register_secrets(env)
    debug = bool(given.get("debug"))
    log.debug_enabled = debug
    stop_on_signals()
    try:
        settings = parse(command.name, given, env, table=command.table, settings=command.settings)
        command.run(settings)
        sys.stdout.flush()
    except CiImagesError as exc:
        if debug:
            sys.stderr.write(redact(traceback.format_exc()))
        log.error(exc.render())
        return exc.exit_code
    except Interrupted as exc:
        done = exc.summary or "stopped before anything was built or pushed"
        log.error(
            f"interrupted by {signal.Signals(exc.signum).name}: {done}; no tag moved after the interrupt"
        )
        return exc.exit_code
    except KeyboardInterrupt:  # before our handlers were installed
        log.error("interrupted: stopped before anything was built or pushed")
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001  (a bug: still one redacted line; the traceback with --debug)
        if debug:
            sys.stderr.write(redact(traceback.format_exc()))
        else:
            log.error(
                f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)"
            )
        return 1
    return 0


# ---- door 1: python -m ci_images ----------------------------------------------------------------------------------


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
    commands: Sequence[Command] = COMMANDS, prog: str = PROG, description: str = DESCRIPTION
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
    commands: Sequence[Command] = COMMANDS,
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


# ---- door 2: invoke -------------------------------------------------------------------------------------------------


def _invoke_default(option: Option) -> object:
    return {"flag": False, "list": [], "optional": None, "value": None}[option.kind]


def invoke_task(command: Command) -> Any:
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


def _plain_parse_error(text: str) -> str:
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


def _parse_errors_exit_2() -> None:
    """invoke exits 1 on an unknown flag or a missing value; every other bad input exits 2. Make it 2 with one line."""
    from invoke.exceptions import Exit, ParseError
    from invoke.program import Program

    if getattr(Program.parse_tasks, "_ci_images", False):
        return
    original = Program.parse_tasks

    def parse_tasks(self: Any) -> None:
        try:
            original(self)
        except ParseError as exc:
            task = getattr(exc.context, "name", None) or "TASK"
            raise Exit(f"error: {_plain_parse_error(str(exc))} (see `invoke --help {task}`)", code=2) from exc

    parse_tasks._ci_images = True  # type: ignore[attr-defined]
    Program.parse_tasks = parse_tasks  # type: ignore[method-assign]
    _list_flags_need_a_value()


def _list_flags_need_a_value() -> None:
    """invoke takes a list flag given no value (``--images`` at the end, or before another flag) as not given at all:
    ``invoke push-images --images $EMPTY`` would publish every entry. Make it the error argparse makes."""
    from invoke.parser.parser import ParseMachine

    original = ParseMachine.complete_flag

    def complete_flag(self: Any) -> None:
        if self.flag is not None and self.flag.kind is list and not self.flag_got_value:
            self.error(f"Flag {self.flag!r} needed value and was not given one!")
        original(self)

    ParseMachine.complete_flag = complete_flag  # type: ignore[method-assign]


def invoke_collection(commands: Sequence[Command] = COMMANDS) -> Collection:
    from invoke.collection import Collection

    _parse_errors_exit_2()
    return Collection(*(invoke_task(command) for command in commands))
