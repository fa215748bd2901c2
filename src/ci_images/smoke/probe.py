"""Run one smoke test: start the image the way SOPS' CI does, run the kind's client probe, then the image's own
HEALTHCHECK command inside the container (proves the check works without waiting for the engine's intervals).

Everything is bounded by one deadline; under QEMU (arm64 on an amd64 host) startup takes far longer than natively.
"""

from __future__ import annotations

import importlib
import time
from types import ModuleType
from typing import TYPE_CHECKING

from ci_images.errors import SmokeError, UsageError
from ci_images.log import log
from ci_images.smoke import KINDS
from ci_images.smoke.common import (
    LOG_TAIL_LINES,
    Deadline,
    ProbeFailed,
    SmokeResult,
    failure_text,
    healthcheck_argv,
    run_healthcheck,
)

if TYPE_CHECKING:
    from ci_images.engine.client import Engine

DEFAULT_TIMEOUT_S = 180.0


def probe_module(kind: str) -> ModuleType:
    """The module that implements ``kind`` (``ci_images.smoke.<kind>``)."""
    if kind not in KINDS:
        raise UsageError(f"unknown smoke test kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    return importlib.import_module(f"ci_images.smoke.{kind}")


def smoke_test(
    engine: Engine, kind: str, image: str, *, platform: str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> SmokeResult:
    """Start ``image`` (for ``platform``), exercise it as SOPS' tests do, run its HEALTHCHECK; SmokeError if not."""
    module = probe_module(kind)
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    config = engine.image_config(image)
    health = healthcheck_argv((config.get("Healthcheck") or {}).get("Test"))
    if health is None:
        # Mirrored upstream images (local-kms has none) are tested as they are; the client probe still runs.
        log.info(
            f"{kind} smoke test of {image} ({platform}): the image has no HEALTHCHECK; only the client probe runs"
        )
    env: dict[str, str] = module.environment()
    with engine.run_service(
        image, platform=platform, env=env, container_port=module.CONTAINER_PORT, port_env=module.port_env
    ) as service:
        try:
            module.probe(service, deadline, env=env, image_env=config.get("Env") or [])
            if health is not None:
                run_healthcheck(service, health, deadline)
        except ProbeFailed as exc:
            raise SmokeError(
                failure_text(kind, image, platform, exc.what, service.logs(tail=LOG_TAIL_LINES)),
                fix=exc.fix or f"run `docker run --rm {image}` and compare with the logs above",
            ) from exc
    duration = time.monotonic() - started
    log.info(f"smoke {kind} {image} ({platform}): ok in {duration:.1f} s")
    return SmokeResult(kind=kind, platform=platform, duration_s=duration)
