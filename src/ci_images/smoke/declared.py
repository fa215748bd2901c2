"""The probes a catalog declares without Python: healthcheck, tcp, http, log and command.

Each waits, within its own deadline, for one sign that the service works, and raises ProbeFailed (which the runner
turns into a SmokeError with the container's logs) when the sign does not come or the container stops first. The
waits follow testcontainers' wait strategies (health check, listening port, HTTP status, log message) and Compose's
``condition: service_healthy``; the command probe is how a project uses its own client, as kms.py and vault.py use
boto3 and hvac.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import Any

import requests

from ci_images.catalog.probes import CommandProbe, HttpProbe, LogProbe
from ci_images.engine.client import Engine
from ci_images.engine.oneshot import run_once
from ci_images.engine.service import RunningService
from ci_images.smoke.common import Deadline, ProbeFailed, loopback_session, request_timeout, require_time

POLL_S = 0.5
LOG_SCAN_LINES = 100_000  # the log probe reads the whole output of a service that just started
SHOWN_OUTPUT_LINES = 20
# The address a command probe finds the service at: its own variables, so a client's other settings stay its own.
SERVICE_HOST_ENV = "SERVICE_HOST"
SERVICE_PORT_ENV = "SERVICE_PORT"
_TIMEOUT_FIX = "check the logs above; a platform run under QEMU may need a longer `timeout:`"
_STOPPED = {"exited", "dead", "removed"}


def poll(service: RunningService, deadline: Deadline, failed: str, check: Callable[[], str | None]) -> None:
    """Call ``check`` (None: ready; else why not) until it passes; ProbeFailed when the container stops first or
    the deadline passes, with ``failed`` ("port 8080 did not accept a connection") and the last reason."""
    last = "no answer yet"
    while True:
        status = service.status()  # also refreshes container.attrs, which the healthcheck probe reads
        if status in _STOPPED:
            raise ProbeFailed(
                f"container {status} (exit code {service.exit_code()}) before the probe passed ({last})",
                fix="the service did not start or did not stay up: read its logs above (wrong platform, entrypoint "
                "or settings?)",
            )
        reason = check()
        if reason is None:
            return
        last = reason
        if deadline.remaining() <= 0:
            raise ProbeFailed(f"{failed} within {deadline.timeout_s:.0f} s ({last})", fix=_TIMEOUT_FIX)
        time.sleep(min(POLL_S, deadline.remaining()))


# -- healthcheck ---------------------------------------------------------------------------------------------------


def wait_healthy(service: RunningService, deadline: Deadline) -> None:
    """Until the engine reports the container's health ``healthy`` (Docker's own HEALTHCHECK runner)."""

    def check() -> str | None:
        health: dict[str, Any] = (service.container.attrs.get("State") or {}).get("Health") or {}
        status = health.get("Status") or "none yet"
        if status == "healthy":
            return None
        checks = health.get("Log") or []
        if not checks:
            return f"health status {status}, no check has run yet"
        last = checks[-1]
        output = " ".join(str(last.get("Output") or "").split())[-200:]
        return f"health status {status}; the last check exited {last.get('ExitCode')}" + (
            f": {output}" if output else ""
        )

    poll(service, deadline, "the engine did not report the container healthy", check)


# -- tcp -----------------------------------------------------------------------------------------------------------


def tcp_answer(host: str, port: int, timeout_s: float) -> str | None:
    """None when ``host:port`` accepts a connection that stays open (or sends something); why not otherwise.

    An engine with a bridge network publishes ports through its userland proxy, which accepts a connection even when
    nothing listens in the container and then closes it at once; a service that is really listening keeps it open
    (waiting for its client) or speaks first. So a connection closed at once does not count.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(0.3)
            try:
                data = sock.recv(1)
            except TimeoutError:
                return None  # open and quiet: a server waiting for its client to speak
            except ConnectionResetError:
                return "the connection was reset at once"
            return None if data else "the connection was closed at once (nothing listening behind the port?)"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def wait_tcp(service: RunningService, container_port: int, host_port: int, deadline: Deadline) -> None:
    def check() -> str | None:
        return tcp_answer(service.host, host_port, request_timeout(deadline, 5))

    poll(
        service,
        deadline,
        f"port {container_port} ({service.host}:{host_port}) did not accept a connection",
        check,
    )


# -- http ----------------------------------------------------------------------------------------------------------


def wait_http(
    service: RunningService, probe: HttpProbe, container_port: int, host_port: int, deadline: Deadline
) -> None:
    url = f"http://{service.host}:{host_port}{probe.path}"
    body = re.compile(probe.body) if probe.body is not None else None
    session = loopback_session()

    def check() -> str | None:
        try:
            # Redirects are answers too: `status: 302` is checkable, and nothing leaves loopback.
            response = session.get(url, timeout=request_timeout(deadline, 10), allow_redirects=False)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code != probe.status:
            return f"answered {response.status_code}{_snippet(response.text)}"
        if body is not None and not body.search(response.text):
            return f"answered {response.status_code} but the body has no match of /{probe.body}/{_snippet(response.text)}"
        return None

    wanted = f"{probe.status}" + (f" with a body matching /{probe.body}/" if probe.body else "")
    poll(service, deadline, f"GET {url} (container port {container_port}) did not answer {wanted}", check)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return f", body {flat[:200]!r}" if flat else ", empty body"


# -- log -----------------------------------------------------------------------------------------------------------


def wait_log(service: RunningService, probe: LogProbe, deadline: Deadline) -> None:
    pattern = re.compile(probe.pattern)

    def check() -> str | None:
        lines = service.logs(tail=LOG_SCAN_LINES).splitlines()
        if any(pattern.search(line) for line in lines):
            return None
        return f"{len(lines)} line(s) so far"

    poll(service, deadline, f"no line of the container's output matched /{probe.pattern}/", check)


# -- command -------------------------------------------------------------------------------------------------------


# Makes a command probe's client image present in the engine for a platform; returns the reference to run.
ClientImage = Callable[[str, str], str]


def pull_as_written(engine: Engine) -> ClientImage:
    """The client image as the catalog names it, pulled (anonymously, or with docker's own login) when the engine
    lacks it. A run passes its own instead (``run.clients``): through the upstream mirror, with its credentials."""

    def present(image: str, platform: str) -> str:
        if not engine.has_image(image):
            engine.pull(image, platform=platform)
        return image

    return present


def run_command(
    engine: Engine,
    service: RunningService,
    probe: CommandProbe,
    container_port: int,
    deadline: Deadline,
    *,
    client_image: ClientImage | None = None,
) -> None:
    """Run the probe's command once in a container of its client image, next to the service; pass on exit 0.

    The client runs on the host's platform (natively) in the service's reach: on the host's network where the
    engine has no bridge, else in the service container's own network namespace; either way SERVICE_HOST and
    SERVICE_PORT say where the service answers. A client image the engine lacks is pulled by ``client_image``
    (pin it by digest).
    """
    client_platform = engine.host_platform()
    image = (client_image or pull_as_written(engine))(probe.image, client_platform)
    require_time(deadline, f"running {list(probe.argv)!r}")
    if engine.network_mode == "host":
        network, host, port = "host", service.host, service.port
    else:
        network, host, port = f"container:{service.container.id}", "127.0.0.1", container_port
    env = {**probe.env, SERVICE_HOST_ENV: host, SERVICE_PORT_ENV: str(port)}
    finished = run_once(
        engine,
        image,
        argv=probe.argv,
        env=env,
        network_mode=network,
        platform=client_platform,
        timeout_s=max(1.0, deadline.remaining()),
    )
    if finished.exit_code == 0:
        return
    outcome = (
        f"ran past its {deadline.timeout_s:.0f} s"
        if finished.exit_code is None
        else f"exited {finished.exit_code}"
    )
    shown = "".join(f"\n  > {line}" for line in finished.output.rstrip().splitlines()[-SHOWN_OUTPUT_LINES:])
    client = probe.image if image == probe.image else f"{probe.image} (pulled as {image})"
    raise ProbeFailed(
        f"command {list(probe.argv)!r} in {client} {outcome}; its output:{shown or ' <none>'}",
        fix=f"run it by hand against the service (`docker run --rm -e {SERVICE_HOST_ENV}=... -e "
        f"{SERVICE_PORT_ENV}=... {probe.image} ...`); put a readiness probe (tcp, http, log, healthcheck) before "
        "it if the service was not up yet",
    )


__all__ = [
    "SERVICE_HOST_ENV",
    "SERVICE_PORT_ENV",
    "ClientImage",
    "poll",
    "pull_as_written",
    "run_command",
    "tcp_answer",
    "wait_healthy",
    "wait_http",
    "wait_log",
    "wait_tcp",
]
