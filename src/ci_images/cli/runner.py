"""The one guarded runner both doors use: secrets from the environment are registered for redaction first, signal
handlers are in place (cli/signals.py: the doors install theirs before they import anything), the options are
parsed and checked (exit 2 on bad input, one line saying what and where),
the command runs, and any error is printed once, redacted, and becomes its own exit code. Tracebacks only with
``--debug``, redacted too."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from ci_images.cli import signals
from ci_images.cli.table import Command
from ci_images.commands.options import parse
from ci_images.errors import CiImagesError, Interrupted
from ci_images.log import log, redact

# Values that must never reach any output, whichever command runs and however it fails.
SECRET_VARIABLES = (
    "CI_IMAGES_REGISTRY_PASSWORD",
    "CI_IMAGES_UPSTREAM_PASSWORD",
    "COSIGN_PASSWORD",
    "GITHUB_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
)


def register_secrets(env: Mapping[str, str]) -> None:
    for name in SECRET_VARIABLES:
        log.add_mask(env.get(name))


def _quiet_stdout() -> None:
    """The reader of our standard output went away (``| head -1``): send the rest nowhere, say nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run(command: Command[Any], given: Mapping[str, object], env: Mapping[str, str] | None = None) -> int:
    """Run ``command`` with the values a door parsed; returns the exit code. Nothing it prints carries a secret."""
    env = os.environ if env is None else env
    register_secrets(env)
    debug = bool(given.get("debug"))
    log.debug_enabled = debug
    restore = signals.after_the_run()
    try:
        signals.stop_the_run()  # inside the try: a signal from this instant on is an Interrupted caught below
        settings = parse(command.name, given, env, table=command.table, settings=command.settings)
        command.run(settings)
        sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001  (each kind of ending has its exit code; see _ended)
        restore()  # in a door, a signal while this ending is reported ends the process with its code
        return _ended(exc, debug)
    restore()
    return 0


def _ended(exc: BaseException, debug: bool) -> int:
    """The exit code of a command that raised ``exc``, its one redacted line printed (the traceback with --debug)."""
    if isinstance(exc, CiImagesError):
        if debug:
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        log.error(exc.render())
        return exc.exit_code
    if isinstance(exc, Interrupted):
        done = exc.summary or "stopped before anything was built or pushed"
        log.error(
            f"interrupted by {signal.Signals(exc.signum).name}: {done}; no tag moved after the interrupt"
        )
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):  # not from our handlers (a test, an embedding program)
        log.error("interrupted: stopped before anything was built or pushed")
        return 130
    if isinstance(exc, BrokenPipeError):
        _quiet_stdout()
        return 0
    if not isinstance(exc, Exception):  # SystemExit and the like: not ours to turn into a code
        raise exc
    # A bug: still one redacted line; the traceback with --debug.
    if debug:
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    else:
        log.error(f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
    return 1
