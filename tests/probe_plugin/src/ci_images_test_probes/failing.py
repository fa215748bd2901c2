"""Plugins that do not pass: a failed check, a plugin bug, and an interrupt while the service runs."""

from __future__ import annotations

from collections.abc import Mapping

from ci_images.engine.service import RunningService
from ci_images.smoke.common import Deadline, ProbeFailed

FAILS_MESSAGE = "demo-fails: the answer was 41, not 42"


def fails(
    service: RunningService, deadline: Deadline, *, env: Mapping[str, str], image_env: list[str]
) -> None:
    raise ProbeFailed(FAILS_MESSAGE, fix="demo-fails always fails")


def crashes(
    service: RunningService, deadline: Deadline, *, env: Mapping[str, str], image_env: list[str]
) -> None:
    raise ZeroDivisionError("demo-crashes divided by zero")


def interrupted(
    service: RunningService, deadline: Deadline, *, env: Mapping[str, str], image_env: list[str]
) -> None:
    """Ctrl-C arriving while the probe runs (Python raises KeyboardInterrupt wherever the main thread is)."""
    raise KeyboardInterrupt
