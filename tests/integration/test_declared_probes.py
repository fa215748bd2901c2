"""Smoke tests declared in the catalog, against the real engine: the lab's demo service (busybox httpd, an image this
package has no module for) passes every probe type, fails each one in the way it should, and runs a plugin found
through its entry point. Every failure names the probe, the image and the platform; no container outlives a test,
interrupts included."""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_images.catalog.load import load_catalog
from ci_images.catalog.probes import SmokeSpec
from ci_images.engine.client import CONTAINER_LABEL, Engine
from ci_images.errors import CiImagesError, SmokeError, UsageError
from ci_images.lab.demo import ensure_demo_service
from ci_images.lab.standins import arch_of
from ci_images.smoke.plugins import known_probes, plugin_names
from ci_images.smoke.probe import smoke_test
from tests.integration.conftest import unavailable

pytestmark = pytest.mark.integration

# The demo service's own settings, as a catalog entry for it would say them.
SERVICE = """\
port: 8080
port_env: {LISTEN: "127.0.0.1:{port}"}
"""


@pytest.fixture(scope="module")
def platform(engine: Engine) -> str:
    return engine.host_platform()


@pytest.fixture(scope="module")
def demo(engine: Engine, platform: str) -> dict[str, str]:
    """The demo service without and with a HEALTHCHECK (built once, cached in the engine by content)."""
    try:
        arch_of(platform)
        return {
            "plain": ensure_demo_service(engine, platform, healthcheck=False),
            "health": ensure_demo_service(engine, platform, healthcheck=True),
        }
    except CiImagesError as exc:
        unavailable(f"cannot build the demo service: {exc}")
        raise


@pytest.fixture
def declare(tmp_path: Path) -> Any:
    """Turn the YAML under an image's `smoke:` into its SmokeSpec through the real catalog loader."""

    def parse(smoke: str) -> SmokeSpec:
        catalog = tmp_path / "images.yaml"
        catalog.write_text(
            'images:\n  demo:\n    source: acme/demo\n    versions: ["1.0.0"]\n    smoke:\n'
            + textwrap.indent(textwrap.dedent(smoke), "      "),
            encoding="utf-8",
        )
        spec = load_catalog(catalog, smoke_kinds=known_probes()).images[0].smoke
        assert spec is not None
        return spec

    return parse


@pytest.fixture(autouse=True)
def no_leftovers(engine: Engine) -> Iterator[None]:
    yield
    client: Any = engine.client
    left = client.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={engine.run_id}"})
    assert not left, f"containers left behind: {[c.name for c in left]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- every probe type passes -------------------------------------------------------------------------------------


def test_every_probe_type_passes_on_a_service_the_package_does_not_know(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any
) -> None:
    # The service waits 2 s before it listens: each probe has to wait for it, not look once.
    spec = declare(
        SERVICE
        + """\
env: {DEMO_DELAY: "2"}
timeout: 30
probes:
  - tcp
  - http: {path: /health, body: "^ok$"}
  - healthcheck
  - log: "demo-service: listening on "
  - command:
      image: CLIENT_IMAGE
      argv:
        - sh
        - -c
        - >-
          wget -q -O - "http://$SERVICE_HOST:$SERVICE_PORT/health" | grep -qx ok &&
          printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 "$SERVICE_HOST" "$SERVICE_PORT" | grep -qx demo-service
""".replace("CLIENT_IMAGE", demo["plain"])
    )
    result = smoke_test(engine, spec, demo["health"], platform=platform)
    assert (result.kind, result.platform) == ("tcp, http, healthcheck, log, command", platform)
    assert result.duration_s >= 2


def test_a_service_on_its_own_ports_needs_no_port_env(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any
) -> None:
    """Without port_env a host-network service keeps its ports; a second port is probed where it listens."""
    main, admin = free_port(), free_port()
    spec = declare(
        f"""\
port: {main}
env: {{PORT: "{main}", ADMIN_PORT: "{admin}"}}
timeout: 20
probes:
  - tcp
  - tcp: {{port: {admin}}}
  - http: {{port: {admin}, path: /health}}
"""
    )
    assert spec.ports == (main, admin)
    smoke_test(engine, spec, demo["plain"], platform=platform)


def test_a_port_in_use_on_a_shared_host_network_is_refused(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any
) -> None:
    """A probe must never pass against some other program listening on the port the service would share."""
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        spec = declare(f'port: {port}\nenv: {{PORT: "{port}"}}\ntimeout: 20\nprobes: [tcp]\n')
        if engine.network_mode != "host":
            smoke_test(engine, spec, demo["plain"], platform=platform)  # its own network: no clash
            return
        with pytest.raises(SmokeError) as caught:
            smoke_test(engine, spec, demo["plain"], platform=platform)
    assert f"port {port} is already in use on this host" in caught.value.message


# -- each probe type fails as it should -----------------------------------------------------------------------------


FAILURES: dict[str, tuple[str, str, list[str]]] = {
    # name: (image, smoke settings and probes, what the message must say)
    "tcp: nothing listens in time": (
        "plain",
        'env: {DEMO_DELAY: "600"}\nprobes: [{tcp: {timeout: 3}}]',
        ["smoke probe tcp on the service's port", "did not accept a connection within 3 s", "waiting 600 s"],
    ),
    "http: wrong status": (
        "plain",
        "probes: [{http: {path: /missing, timeout: 3}}]",
        ["http GET /missing", "did not answer 200 within 3 s", "answered 404"],
    ),
    "http: body without a match": (
        "plain",
        'probes: [{http: {path: /health, body: "^healthy$", timeout: 3}}]',
        ["did not answer 200 with a body matching /^healthy$/", "the body has no match", "body 'ok'"],
    ),
    "healthcheck: never healthy": (
        "health",
        'env: {DEMO_NO_HEALTH: "1"}\nprobes: [{healthcheck: {timeout: 5}}]',
        ["smoke probe healthcheck", "the engine did not report the container healthy within 5 s", "exited 1"],
    ),
    "healthcheck: the image has none": (
        "plain",
        "probes: [healthcheck]",
        ["the image has no HEALTHCHECK, so the engine never reports it healthy"],
    ),
    "log: the line never comes": (
        "plain",
        'probes: [{log: {pattern: "^never printed$", timeout: 3}}]',
        ["no line of the container's output matched /^never printed$/ within 3 s", "listening on"],
    ),
    "command: exits non-zero": (
        "plain",
        "probes: [{command: {image: CLIENT_IMAGE, argv: [sh, -c, 'echo client saw $SERVICE_HOST:$SERVICE_PORT; exit 3']}}]",
        ["exited 3; its output:", "> client saw 127.0.0.1:"],
    ),
    "command: runs past its timeout": (
        "plain",
        "probes: [{command: {image: CLIENT_IMAGE, argv: [sleep, '600'], timeout: 3}}]",
        ["command ['sleep', '600']", "ran past its 3 s"],
    ),
    "the service exits": (
        "plain",
        'env: {DEMO_EXIT: "5"}\nprobes: [{tcp: {timeout: 30}}, {log: listening}]',
        [
            "smoke probe 1/2 tcp on the service's port",
            "container exited (exit code 5)",
            "exiting with 5 as asked",
        ],
    ),
    "the second probe of three": (
        "plain",
        "probes: [tcp, {http: {path: /missing, timeout: 3}}, {log: listening}]",
        ["smoke probe 2/3 http GET /missing"],
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=list(FAILURES))
def test_each_probe_type_fails_with_the_probe_image_platform_and_logs(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any, case: tuple[str, str, list[str]]
) -> None:
    image_key, probes, expected = case
    spec = declare(SERVICE + probes.replace("CLIENT_IMAGE", demo["plain"]) + "\n")
    image = demo[image_key]
    with pytest.raises(SmokeError) as caught:
        smoke_test(engine, spec, image, platform=platform)
    message = caught.value.message
    assert caught.value.exit_code == 7
    assert f"of {image} ({platform}, image id sha256:" in message
    for text in expected:
        assert text in message, message


# -- plugins -------------------------------------------------------------------------------------------------------


@pytest.fixture
def test_plugins() -> None:
    if "demo-http" not in plugin_names():
        unavailable("the test plugin package is not installed: run through `nox -s tests`")


@pytest.mark.usefixtures("test_plugins")
def test_an_installed_plugin_is_found_and_run(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any
) -> None:
    # Its own port, port_env and environment (a fresh token the probe then finds inside the container).
    result = smoke_test(engine, declare("demo-http\n"), demo["plain"], platform=platform)
    assert result.kind == "demo-http"
    result = smoke_test(
        engine, declare("[healthcheck, {plugin: demo-http}]\n"), demo["health"], platform=platform
    )
    assert result.kind == "healthcheck, demo-http"


@pytest.mark.usefixtures("test_plugins")
@pytest.mark.parametrize(
    ("plugin", "error", "expected"),
    [
        ("demo-fails", SmokeError, "failed: demo-fails: the answer was 41, not 42"),
        (
            "demo-crashes",
            SmokeError,
            (
                "plugin 'demo-crashes' from ci-images-test-probes 1.0.0 (ci_images_test_probes.failing:crashes) raised "
                "ZeroDivisionError: demo-crashes divided by zero"
            ),
        ),
        ("demo-broken", UsageError, "smoke probe plugin 'demo-broken' from ci-images-test-probes 1.0.0"),
        ("not-installed", UsageError, "smoke probe plugin 'not-installed' is not installed"),
    ],
)
def test_a_failing_or_missing_plugin_is_an_error_naming_it(
    engine: Engine,
    demo: dict[str, str],
    platform: str,
    declare: Any,
    plugin: str,
    error: type[CiImagesError],
    expected: str,
) -> None:
    spec = declare(SERVICE + f"timeout: 20\nprobes: [{{plugin: {plugin}}}]\n")
    with pytest.raises(error) as caught:
        smoke_test(engine, spec, demo["plain"], platform=platform)
    assert expected in caught.value.message


# -- interrupts ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("test_plugins")
def test_an_interrupt_inside_a_probe_removes_the_service(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any
) -> None:
    spec = declare(SERVICE + "probes: [tcp, {plugin: demo-interrupted}]\n")
    with pytest.raises(KeyboardInterrupt):
        smoke_test(engine, spec, demo["plain"], platform=platform)
    # no_leftovers checks the engine


def test_sigint_during_a_command_probe_removes_the_client_and_the_service(
    engine: Engine, demo: dict[str, str], platform: str, declare: Any
) -> None:
    spec = declare(
        SERVICE + f"probes: [tcp, {{command: {{image: {demo['plain']}, argv: [sleep, '600']}}}}]\n"
    )
    client: Any = engine.client
    seen: list[str] = []

    def interrupt_once_the_client_runs() -> None:
        for _ in range(600):
            running = client.containers.list(filters={"label": f"{CONTAINER_LABEL}={engine.run_id}"})
            if len(running) == 2:  # the service and the command's client
                seen.extend(c.name for c in running)
                os.kill(
                    os.getpid(), signal.SIGINT
                )  # a real signal: the main thread is blocked in the engine's wait
                return
            threading.Event().wait(0.1)

    watcher = threading.Thread(target=interrupt_once_the_client_runs, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        smoke_test(engine, spec, demo["plain"], platform=platform)
    watcher.join(5)
    assert len(seen) == 2 and any("-cmd-" in name for name in seen)
