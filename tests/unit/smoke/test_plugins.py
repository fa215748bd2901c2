"""Named probes without an engine: built-ins and plugins found through the `ci_images.smoke` entry points (the test
plugin package tests/probe_plugin, installed by the nox sessions), and the tcp probe's test of a listening port."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest

from ci_images.catalog.probes import named_smoke
from ci_images.commands import upkeep
from ci_images.commands.options import LIST, parse_options
from ci_images.commands.setup import prepare
from ci_images.errors import CatalogError, UsageError
from ci_images.lab.cli import standins_for
from ci_images.smoke import KINDS, kms
from ci_images.smoke.declared import tcp_answer
from ci_images.smoke.plugins import ENTRY_POINT_GROUP, known_probes, plugin_names, resolve

TEST_PLUGINS = {"demo-http", "demo-fails", "demo-crashes", "demo-interrupted", "demo-broken"}


@pytest.fixture
def test_plugins_installed() -> None:
    if not set(plugin_names()) >= TEST_PLUGINS:
        reason = (
            "the test plugin package is not installed: run through `nox -s unit-tests` / `nox -s tests`, or "
            "`pip install --no-deps tests/probe_plugin`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def test_built_ins_resolve_to_their_modules() -> None:
    impl = resolve("kms", plugin=False)
    assert (impl.builtin, impl.origin, impl.container_port) == (True, "built-in", kms.CONTAINER_PORT)
    assert impl.probe is kms.probe and impl.port_env is kms.port_env and impl.environment is kms.environment


@pytest.mark.usefixtures("test_plugins_installed")
def test_installed_plugins_are_found_through_the_entry_point_group() -> None:
    names = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert names >= TEST_PLUGINS
    assert known_probes()[: len(KINDS)] == KINDS
    assert set(known_probes()) >= TEST_PLUGINS
    impl = resolve("demo-http", plugin=False)
    assert not impl.builtin
    assert (
        impl.origin == "plugin 'demo-http' from ci-images-test-probes 1.0.0 (ci_images_test_probes.demo_http)"
    )
    assert impl.container_port == 8080
    assert impl.port_env is not None and impl.port_env(4321) == {"LISTEN": "127.0.0.1:4321"}
    # A bare function is the probe itself, with no service settings of its own.
    fails = resolve("demo-fails", plugin=True)
    assert (fails.probe.__name__, fails.container_port, fails.port_env, fails.environment) == (
        "fails",
        None,
        None,
        None,
    )


def test_a_plugin_that_is_not_installed_is_an_error_naming_it() -> None:
    with pytest.raises(UsageError) as info:
        resolve("no-such-probe", plugin=True)
    assert "smoke probe plugin 'no-such-probe' is not installed" in info.value.message
    assert ENTRY_POINT_GROUP in info.value.message
    assert info.value.fix is not None and "install the package that provides it" in info.value.fix


def test_plugin_wins_over_nothing_but_never_over_a_built_in_name() -> None:
    # `kms` written bare is the built-in; `plugin: kms` looks for an entry point only (none is installed).
    assert resolve("kms", plugin=False).builtin
    with pytest.raises(UsageError, match="'kms' is not installed"):
        resolve("kms", plugin=True)


@pytest.mark.usefixtures("test_plugins_installed")
def test_a_plugin_that_cannot_be_loaded_is_an_error_naming_it_and_its_package() -> None:
    with pytest.raises(UsageError) as info:
        resolve("demo-broken", plugin=False)
    message = info.value.message
    assert message.startswith("smoke probe plugin 'demo-broken' from ci-images-test-probes 1.0.0")
    assert "could not be loaded: ModuleNotFoundError" in message
    assert info.value.fix is not None and "import ci_images_test_probes.no_such_module" in info.value.fix


# -- the tcp probe's test of a port ----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[socket.socket, list[str]]]:
    """A loopback listener whose behaviour the test sets: "quiet" keeps connections open, "close" closes them at
    once (what an engine's userland proxy does when nothing listens behind a published port), "greet" speaks."""
    listener = socket.create_server(("127.0.0.1", 0))
    mode = ["quiet"]
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if mode[0] == "close":
                conn.close()
            elif mode[0] == "greet":
                conn.sendall(b"220 hello\r\n")
                held.append(conn)
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener, mode
    # shutdown wakes the blocked accept (close alone would not, and a later listener could reuse its descriptor).
    listener.shutdown(socket.SHUT_RDWR)
    thread.join(5)
    listener.close()
    for conn in held:
        conn.close()


def test_tcp_counts_an_open_connection_or_a_greeting(server: tuple[socket.socket, list[str]]) -> None:
    listener, mode = server
    port = listener.getsockname()[1]
    assert tcp_answer("127.0.0.1", port, 2) is None
    mode[0] = "greet"
    assert tcp_answer("127.0.0.1", port, 2) is None


def test_tcp_does_not_count_a_connection_closed_at_once(server: tuple[socket.socket, list[str]]) -> None:
    listener, mode = server
    mode[0] = "close"
    reason = tcp_answer("127.0.0.1", listener.getsockname()[1], 2)
    assert reason is not None and ("closed at once" in reason or "reset" in reason)


def test_tcp_reports_why_nothing_answers() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    reason = tcp_answer("127.0.0.1", free, 2)
    assert reason is not None and reason.startswith("ConnectionRefusedError")


# -- every door that loads the catalog knows the installed plugins ---------------------------------------------------


def install_plugin(site: Path, name: str, value: str) -> None:
    """A distribution as pip leaves one in site-packages (a .dist-info with entry_points.txt): importlib.metadata
    finds it on sys.path as it finds any installed package. Loading a catalog only needs the name, never the code."""
    info = site / "acme_probes-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-probes\nVersion: 2.0\n", "utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {value}\n", "utf-8")


ACME_CATALOG = """\
registry: registry.example.com/team
images:
  acme:
    source: docker.io/acme/service
    versions: ["1.0.0"]
    smoke: acme-probe
"""


def _setup_smoke(catalog: Path) -> object:
    with prepare(parse_options(LIST, {"catalog": str(catalog)}, {})) as made:
        return made.entries[0].smoke


def _lab_standins(catalog: Path) -> object:
    return standins_for(catalog)[0]


def _bump_check(catalog: Path) -> object:
    upkeep._checked(catalog, catalog.read_text("utf-8"))
    return None


@pytest.mark.parametrize("load", [_setup_smoke, _lab_standins, _bump_check], ids=["setup", "lab-up", "bump"])
def test_every_catalog_loader_knows_the_installed_plugins(
    load: Callable[[Path], object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "images.yaml"
    catalog.write_text(ACME_CATALOG, "utf-8")
    with pytest.raises((CatalogError, UsageError), match="unknown smoke kind 'acme-probe'"):
        load(catalog)
    install_plugin(tmp_path / "site", "acme-probe", "acme_probes.probe")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "acme-probe" in known_probes()
    loaded = load(catalog)
    if load is _setup_smoke:
        assert loaded == named_smoke("acme-probe")
