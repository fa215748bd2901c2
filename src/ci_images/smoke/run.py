"""Run one entry's smoke test from its SmokeSpec: start the image once as its consumer would, then every probe in
order, each within its own timeout.

The service container starts on the engine's terms (``Engine.run_service``): on an engine without a bridge network
it shares the host's network (moved to a free loopback port through ``port_env`` when the catalog or the named probe
says how; otherwise on its own port, which must then be free), else its ports are published on loopback. Every
container this starts (the service, a command probe's client) carries the run's label and is removed on every path,
interrupts included. A failure is a SmokeError naming the probe, the image (and its id) and the platform, with the
tail of the service's logs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ci_images.catalog.probes import (
    PORT_PLACEHOLDER,
    CommandProbe,
    HealthcheckProbe,
    HttpProbe,
    LogProbe,
    NamedProbe,
    Probe,
    SmokeSpec,
    TcpProbe,
)
from ci_images.engine.client import Engine
from ci_images.engine.service import RunningService
from ci_images.errors import CiImagesError, SmokeError
from ci_images.log import log, redact
from ci_images.oci import LOOPBACK
from ci_images.smoke import declared
from ci_images.smoke.common import (
    LOG_TAIL_LINES,
    Deadline,
    ProbeFailed,
    SmokeResult,
    healthcheck_argv,
    run_healthcheck,
)
from ci_images.smoke.plugins import NamedImplementation, resolve

DEFAULT_HEALTH_INTERVAL_S = 30.0  # the engine's default when a HEALTHCHECK gives no --interval

# Host-network services that keep their own port: one at a time per port in this process (--jobs runs entries in
# parallel threads, and two versions of one image would otherwise answer on the same port).
_PORT_LOCKS: dict[int, threading.Lock] = {}
_PORT_LOCKS_GUARD = threading.Lock()


def run_smoke(
    engine: Engine,
    spec: SmokeSpec,
    image: str,
    *,
    platform: str,
    client_image: declared.ClientImage | None = None,
) -> SmokeResult:
    """Start ``image`` for ``platform`` and run ``spec``'s probes in order; SmokeError at the first that fails.

    ``client_image`` makes a command probe's client image present (default: pulled as the catalog names it)."""
    started = time.monotonic()
    # Plugins first: a missing one is an error before any container starts.
    named = {p: resolve(p.name, plugin=p.plugin) for p in spec.probes if isinstance(p, NamedProbe)}
    attrs = engine.image_attrs(image)
    config: dict[str, Any] = attrs.get("Config") or {}
    subject = f"{image} ({platform}, image id {str(attrs.get('Id', '?'))[:19]})"
    health = healthcheck_argv((config.get("Healthcheck") or {}).get("Test"))
    _check_healthcheck_probes(spec, config, health, subject)
    impls = list(named.values())
    container_port = spec.port or next((i.container_port for i in impls if i.container_port), None)
    port_env = _port_env(spec, impls, container_port)
    env: dict[str, str] = {}
    for impl in impls:
        env |= impl.environment() if impl.environment else {}
    env |= spec.env
    extra = [p for p in spec.ports if p != container_port]
    fixed = (
        []
        if engine.network_mode != "host"
        else [*extra, *([container_port] if container_port and not port_env else [])]
    )
    with (
        _ports_held(fixed, subject),
        engine.run_service(
            image,
            platform=platform,
            env=env,
            container_port=container_port,
            port_env=port_env,
            extra_ports=extra,
        ) as service,
    ):
        for number, probe in enumerate(spec.probes, start=1):
            step = (
                probe.describe()
                if len(spec.probes) == 1
                else f"{number}/{len(spec.probes)} {probe.describe()}"
            )
            probe_started = time.monotonic()
            try:
                _run_probe(
                    engine,
                    service,
                    probe,
                    named.get(probe) if isinstance(probe, NamedProbe) else None,
                    container_port=container_port,
                    env=env,
                    config=config,
                    health=health,
                    client_image=client_image,
                )
            except ProbeFailed as exc:
                raise SmokeError(
                    _failure_text(step, subject, exc.what, service.logs(tail=LOG_TAIL_LINES)),
                    fix=exc.fix or f"run `docker run --rm {image}` and compare with the logs above",
                ) from exc
            log.debug(f"smoke probe {step} of {subject}: passed in {time.monotonic() - probe_started:.1f} s")
    duration = time.monotonic() - started
    log.info(f"smoke {spec} {image} ({platform}): ok in {duration:.1f} s")
    return SmokeResult(kind=str(spec), platform=platform, duration_s=duration)


def _run_probe(
    engine: Engine,
    service: RunningService,
    probe: Probe,
    impl: NamedImplementation | None,
    *,
    container_port: int | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    health: list[str] | None,
    client_image: declared.ClientImage | None,
) -> None:
    deadline = Deadline(probe.timeout_s)
    if isinstance(probe, HealthcheckProbe):
        declared.wait_healthy(service, deadline)
    elif isinstance(probe, TcpProbe | HttpProbe):
        port = probe.port or container_port
        if port is None:
            raise ProbeFailed(
                f"the {probe.type} probe has no port", fix="add `port: N` to the image's smoke:"
            )
        if isinstance(probe, TcpProbe):
            declared.wait_tcp(service, port, service.ports[port], deadline)
        else:
            declared.wait_http(service, probe, port, service.ports[port], deadline)
    elif isinstance(probe, LogProbe):
        declared.wait_log(service, probe, deadline)
    elif isinstance(probe, CommandProbe):
        if container_port is None:
            raise ProbeFailed(
                "the command probe has no port to tell", fix="add `port: N` to the image's smoke:"
            )
        declared.run_command(engine, service, probe, container_port, deadline, client_image=client_image)
    else:
        assert impl is not None
        _run_named(service, impl, deadline, env=env, image_env=config.get("Env") or [], health=health)


def _run_named(
    service: RunningService,
    impl: NamedImplementation,
    deadline: Deadline,
    *,
    env: Mapping[str, str],
    image_env: list[str],
    health: list[str] | None,
) -> None:
    try:
        impl.probe(service, deadline, env=env, image_env=image_env)
    except (ProbeFailed, CiImagesError):
        raise
    except Exception as exc:
        if impl.builtin:
            raise  # a bug of this package: exit 1 with its traceback under --debug
        raise ProbeFailed(
            f"{impl.origin} raised {type(exc).__name__}: {exc}",
            fix="fix the plugin (a failed check should raise ci_images.smoke.common.ProbeFailed with the reason)",
        ) from exc
    if impl.builtin:
        # The built-ins as they always were: the client probe, then the image's own HEALTHCHECK command run once
        # inside the container (proves the check works without waiting for the engine's interval).
        if health is None:
            log.info(f"{impl.name}: the image has no HEALTHCHECK; only the client probe runs")
        else:
            run_healthcheck(service, health, deadline)


def _port_env(
    spec: SmokeSpec, impls: Sequence[NamedImplementation], container_port: int | None
) -> Callable[[int], Mapping[str, str]] | None:
    """How to move the service to another port on a host network: the catalog's ``port_env``, else that of the named
    probe whose port is used; None when nothing says (the service then keeps its own port)."""
    if spec.port_env:
        templates = dict(spec.port_env)
        return lambda port: {
            name: value.replace(PORT_PLACEHOLDER, str(port)) for name, value in templates.items()
        }
    for impl in impls:
        if impl.port_env is not None and impl.container_port == container_port:
            return impl.port_env
    return None


def _check_healthcheck_probes(
    spec: SmokeSpec, config: Mapping[str, Any], health: list[str] | None, subject: str
) -> None:
    """A healthcheck probe needs an image with a HEALTHCHECK whose first check can come within the timeout."""
    for probe in spec.probes:
        if not isinstance(probe, HealthcheckProbe):
            continue
        if health is None:
            raise SmokeError(
                f"smoke probe healthcheck of {subject}: the image has no HEALTHCHECK, so the engine never reports "
                "it healthy",
                fix="add a HEALTHCHECK to the image's Dockerfile, or use a tcp, http, log or command probe instead",
            )
        interval_ns = int((config.get("Healthcheck") or {}).get("Interval") or 0)
        interval_s = interval_ns / 1e9 if interval_ns else DEFAULT_HEALTH_INTERVAL_S
        if interval_s >= probe.timeout_s:
            raise SmokeError(
                f"smoke probe healthcheck of {subject}: the image's HEALTHCHECK runs every {interval_s:.0f} s, but the "
                f"probe's timeout is {probe.timeout_s:.0f} s: the engine's first check would come too late",
                fix="raise the probe's `timeout:` above the interval, or give the HEALTHCHECK a shorter --interval",
            )


@contextlib.contextmanager
def _ports_held(ports: Sequence[int], subject: str) -> Iterator[None]:
    """Hold this process's lock of each host port a service keeps as its own, after checking nobody listens there:
    a probe must never pass against some other program on that port."""
    with contextlib.ExitStack() as stack:
        for port in sorted(set(ports)):
            with _PORT_LOCKS_GUARD:
                lock = _PORT_LOCKS.setdefault(port, threading.Lock())
            stack.enter_context(lock)
            if _listening(port):
                raise SmokeError(
                    f"smoke test of {subject}: port {port} is already in use on this host, and the service would share "
                    "it (the engine has no bridge network, so containers use the host's)",
                    fix=f"stop what listens on {LOOPBACK}:{port}, or add `port_env:` to the image's smoke: so the "
                    'service can be moved to a free port (e.g. PORT: "{port}")',
                )
        yield


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _failure_text(step: str, subject: str, what: str, logs: str) -> str:
    shown = (
        "\n".join(f"  | {line}" for line in logs.rstrip().splitlines()[-LOG_TAIL_LINES:]) or "  | <no output>"
    )
    # A service may print secrets at startup (Vault's dev root token): redact here too, not only when logged.
    return redact(
        f"smoke probe {step} of {subject} failed: {what}\ncontainer logs (last {LOG_TAIL_LINES} lines):\n{shown}"
    )


__all__ = ["run_smoke"]
