"""Run one smoke test: the entry point the pipeline calls. A built-in kind (``kms``, ``vault``) starts the image the
way SOPS' CI does, runs the kind's client probe, then the image's own HEALTHCHECK command inside the container
(proves the check works without waiting for the engine's intervals), all within one deadline; a SmokeSpec from the
catalog runs its declared probes (``smoke/run.py``).

Under QEMU (arm64 on an amd64 host) startup takes far longer than natively.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from ci_images.catalog.probes import DEFAULT_TIMEOUT_S, SmokeSpec, named_smoke
from ci_images.errors import UsageError
from ci_images.smoke import KINDS
from ci_images.smoke.common import SmokeResult
from ci_images.smoke.declared import ClientImage
from ci_images.smoke.run import run_smoke

if TYPE_CHECKING:
    from ci_images.engine.client import Engine

__all__ = ["DEFAULT_TIMEOUT_S", "ClientImage", "probe_module", "smoke_test"]


def probe_module(kind: str) -> ModuleType:
    """The module that implements ``kind`` (``ci_images.smoke.<kind>``)."""
    if kind not in KINDS:
        raise UsageError(f"unknown smoke test kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    return importlib.import_module(f"ci_images.smoke.{kind}")


def smoke_test(
    engine: Engine,
    kind: str | SmokeSpec,
    image: str,
    *,
    platform: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    client_image: ClientImage | None = None,
) -> SmokeResult:
    """Start ``image`` (for ``platform``) and run its probes (``smoke.run.run_smoke``); SmokeError if one fails.

    ``kind`` is the entry's SmokeSpec, or the name of a built-in (``kms``: the client probe then the image's own
    HEALTHCHECK, within ``timeout_s``, as smoke tests always ran). ``client_image`` makes a command probe's client
    image present in the engine and names the reference to run (a run pulls it through the upstream mirror).
    """
    if isinstance(kind, str):
        probe_module(kind)  # an unknown kind is a UsageError, as before
        kind = named_smoke(kind, timeout_s=timeout_s)
    return run_smoke(engine, kind, image, platform=platform, client_image=client_image)
