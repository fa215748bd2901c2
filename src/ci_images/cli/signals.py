"""SIGINT and SIGTERM from the first instant: 130 and 143, never the signal's own death (-2, -15) or a traceback.

Three stretches of a door's life, each with its handler (only the main thread receives signals):

- start-up, installed by the door before it imports anything of the tool (``__main__``, ``tasks.py``): nothing has
  started, so the process ends at once with one line;
- the command, installed by the runner: the signal unwinds the run as Interrupted, so it stops cleanly (no tag
  moves after it, its containers are removed, the report says what was done);
- after the command, while the runner reports: the process ends at once, with the signal's code (in a door; a
  program that runs commands in-process gets its own handlers back).

Only Python's own start (before it runs the door's first line, some tens of milliseconds) is not covered: a signal
then ends the interpreter by the signal.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from ci_images.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install(handler: signal.Handlers | object) -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _exit_before(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(
        f"error: interrupted by {signal.Signals(signum).name}: stopped before anything was built or pushed\n"
    )
    sys.stderr.flush()
    raise SystemExit(128 + signum)


def _exit_after(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def exit_at_once() -> None:
    """Start-up: a signal ends the process with 128 + its number and one line; nothing has begun."""
    _install(_exit_before)


def stop_the_run() -> None:
    """The command: a signal unwinds the run (Interrupted), so containers it started are removed on the way."""
    _install(_interrupt)


def after_the_run() -> Callable[[], None]:
    """What puts back, once the command has ended, the handlers in place now: a door's start-up handler becomes
    one that ends the process with the signal's code (without the start-up line); any other (a test runner's, a
    program embedding the tool) is itself again."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, _exit_after if handler is _exit_before else handler)

    return restore
