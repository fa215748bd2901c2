"""What every probe shares: the deadline, waiting for a service, the image's own HEALTHCHECK, failure texts."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import botocore.exceptions
import requests

from ci_images.engine.service import RunningService
from ci_images.log import redact

LOG_TAIL_LINES = 60
PROBE_ERRORS = (requests.RequestException, botocore.exceptions.BotoCoreError, ValueError)


@dataclass(frozen=True)
class SmokeResult:
    kind: str
    platform: str
    duration_s: float


class ProbeFailed(Exception):
    """A check failed; becomes a SmokeError that carries the container's logs."""

    def __init__(self, what: str, *, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


class Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._end = time.monotonic() + timeout_s

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


def healthcheck_argv(test: Sequence[str] | None) -> list[str] | None:
    """The argv ``docker exec`` needs for an image's Config.Healthcheck.Test; None when the image has no check.

    ``["CMD", arg...]`` runs as is, ``["CMD-SHELL", cmd]`` through ``/bin/sh -c`` (as the engine does),
    ``["NONE"]`` or nothing means no check.
    """
    if not test:
        return None
    form, *rest = test
    if form == "CMD" and rest:
        return list(rest)
    if form == "CMD-SHELL" and rest:
        return ["/bin/sh", "-c", " ".join(rest)]
    return None


def env_value(env: Sequence[str] | None, name: str) -> str | None:
    """Value of ``name`` in an image's Config.Env list (``["K=V", ...]``)."""
    for item in env or ():
        key, sep, value = item.partition("=")
        if sep and key == name:
            return value
    return None


def failure_text(kind: str, image: str, platform: str, what: str, logs: str) -> str:
    shown = (
        "\n".join(f"  | {line}" for line in logs.rstrip().splitlines()[-LOG_TAIL_LINES:]) or "  | <no output>"
    )
    # The vault dev server prints its root token at startup: redact here too, not only when logged.
    return redact(
        f"{kind} smoke test of {image} ({platform}) failed: {what}\n"
        f"container logs (last {LOG_TAIL_LINES} lines):\n{shown}"
    )


def loopback_session() -> requests.Session:
    session = requests.Session()
    # Only loopback is contacted: a machine-wide HTTP(S)_PROXY must not route it elsewhere.
    session.trust_env = False
    return session


def wait_until_ready(
    service: RunningService, deadline: Deadline, what: str, probe: Callable[[], bool]
) -> None:
    last_error = "no answer yet"
    while True:
        status = service.status()
        if status in {"exited", "dead", "removed"}:
            raise ProbeFailed(
                f"container {status} (exit code {service.exit_code()}) before {what} answered",
                fix="the service did not start: read its logs above (wrong platform, entrypoint or settings?)",
            )
        try:
            if probe():
                return
            last_error = "answered, but not ready"
        except PROBE_ERRORS as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if deadline.remaining() <= 0:
            raise ProbeFailed(
                f"{what} did not answer within {deadline.timeout_s:.0f} s ({last_error})",
                fix="check the logs above; a platform run under QEMU may need a longer timeout",
            )
        time.sleep(min(1.0, deadline.remaining()))


def require_time(deadline: Deadline, step: str) -> None:
    if deadline.remaining() <= 0:
        raise ProbeFailed(
            f"ran out of the {deadline.timeout_s:.0f} s budget before {step}",
            fix="check the logs above; a platform run under QEMU may need a longer timeout",
        )


def request_timeout(deadline: Deadline, cap: float) -> float:
    return max(1.0, min(cap, deadline.remaining()))


def run_healthcheck(service: RunningService, argv: list[str], deadline: Deadline) -> None:
    # At least a few seconds even when the probes used up the budget: the service answered, this is quick.
    exit_code, output = service.exec(argv, timeout_s=max(5.0, deadline.remaining()))
    if exit_code != 0:
        shown = io.StringIO()
        for line in output.rstrip().splitlines()[-20:]:
            shown.write(f"\n  > {line}")
        outcome = "timed out" if exit_code is None else f"exited {exit_code}"
        raise ProbeFailed(
            f"the image's HEALTHCHECK {argv!r} {outcome} although the service answered{shown.getvalue()}",
            fix="fix the HEALTHCHECK in the image's Dockerfile (it must work with busybox only)",
        )
