"""One command in a throwaway container: what a smoke test's ``command`` probe runs its client in.

The container carries the run's label like every smoke container (``Engine.start_container`` puts it there, and
``Engine.remove_run_containers`` finds it after an interrupt) and is removed on every path, Ctrl-C included.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker.errors
import requests

from ci_images.engine.client import CONTAINER_PREFIX, Engine
from ci_images.engine.failures import engine_fix
from ci_images.errors import EngineError
from ci_images.log import log


@dataclass(frozen=True)
class Finished:
    """How a one-off command ended: ``exit_code`` None when it ran past its timeout (and was killed)."""

    exit_code: int | None
    output: str
    duration_s: float


def run_once(
    engine: Engine,
    image: str,
    *,
    argv: Sequence[str],
    env: Mapping[str, str],
    network_mode: str,
    platform: str,
    timeout_s: float,
) -> Finished:
    """Run ``argv`` as the container's whole command line (the image's ENTRYPOINT and CMD are replaced).

    ``network_mode`` is ``host`` or ``container:<id>`` (the service's own network namespace).
    """
    name = f"{CONTAINER_PREFIX}cmd-{secrets.token_hex(6)}"
    container: Any = None
    started = time.monotonic()
    try:
        container = engine.start_container(
            image,
            name=name,
            # The engine does not take the image's CMD when the entrypoint is given (moby daemon/commit.go merge).
            entrypoint=list(argv),
            environment=dict(env),
            network_mode=network_mode,
            platform=platform,
        )
        exit_code = _wait(container, timeout_s)
        return Finished(exit_code, _output(container), time.monotonic() - started)
    finally:
        engine.remove_container(container if container is not None else name)


def _wait(container: Any, timeout_s: float) -> int | None:
    started = time.monotonic()
    try:
        result = container.wait(timeout=max(1.0, timeout_s))
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
        # The SDK reports a wait that outlived its timeout as a read timeout (sometimes wrapped in ConnectionError).
        if time.monotonic() - started >= timeout_s * 0.9:
            log.debug(f"{container.name} ran past {timeout_s:.0f} s")
            return None
        raise EngineError(
            f"engine stopped answering while {container.name} ran: {exc}", fix=engine_fix()
        ) from exc
    except docker.errors.DockerException as exc:
        raise EngineError(f"could not wait for {container.name}: {exc}", fix=engine_fix()) from exc
    return int(result.get("StatusCode", -1))


def _output(container: Any) -> str:
    try:
        raw: bytes = container.logs(stdout=True, stderr=True)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return f"<output unavailable: {exc}>"
    return raw.decode("utf-8", errors="replace")


__all__ = ["Finished", "run_once"]
