"""The one guarded runner both doors use: secrets from the environment are registered for redaction first, signal
handlers are in place, the options are parsed and checked (exit 2 on bad input, one line saying what and where),
the command runs, and any error is printed once, redacted, and becomes its own exit code. Tracebacks only with
``--debug``, redacted too."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Mapping
from types import FrameType
from typing import Any

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


def run(command: Command[Any], given: Mapping[str, object], env: Mapping[str, str] | None = None) -> int:
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
