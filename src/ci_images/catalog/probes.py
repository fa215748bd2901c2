"""Smoke probes declared in the catalog (``smoke:``): the frozen model and its parsing, with file:line errors.

``smoke:`` is null (no smoke test), one probe written as a string (``kms``, ``vault``, ``healthcheck``, ``tcp``,
``http`` or an installed plugin's name), a list of probes, or a mapping of the settings the probes share (``port``,
``port_env``, ``env``, ``timeout``) with the probes, in order, under ``probes``. A probe is one of those strings or a
mapping with one key naming its type: ``healthcheck``, ``tcp``, ``http``, ``log``, ``command`` or ``plugin``. The
readiness checks follow what CI users already write elsewhere: Compose's ``healthcheck`` /
``condition: service_healthy`` and testcontainers' wait strategies (port, HTTP status, log line, health check).

Pure: the probes are run by ``ci_images.smoke`` (``smoke.run.run_smoke``); this module only says what to run.
``parse_smoke`` is the one function the loader calls per ``smoke:`` node, after the JSON Schema has checked its shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ci_images.catalog.schema import located_error
from ci_images.catalog.yamlmarks import Marked
from ci_images.errors import CatalogError

DEFAULT_TIMEOUT_S = 180.0  # per probe; arm64 under QEMU starts services far slower than natively
DEFAULT_HTTP_PATH = "/"
DEFAULT_HTTP_STATUS = 200
PORT_PLACEHOLDER = "{port}"
# Strings that name a probe type; everything else a string names is a built-in (kms, vault) or a plugin.
TYPE_WORDS = ("healthcheck", "tcp", "http", "log", "command", "plugin")
_PLUGIN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Type words that cannot stand alone: what to write instead.
_NEEDS_SETTINGS = {
    "log": "write `log: PATTERN` (a regular expression a line of the output must match)",
    "command": "write `command: {image: CLIENT_IMAGE, argv: [...]}`",
    "plugin": "write `plugin: NAME` (an entry point of the group ci_images.smoke)",
}

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class HealthcheckProbe:
    """Wait until the engine reports the image's own HEALTHCHECK healthy (an image without one fails)."""

    timeout_s: float
    type: ClassVar[str] = "healthcheck"

    def describe(self) -> str:
        return "healthcheck (the engine's health status)"

    def as_record(self) -> dict[str, Any]:
        return {"type": self.type, "timeout": self.timeout_s}


@dataclass(frozen=True)
class TcpProbe:
    """Wait until the container port accepts a connection (``port`` None: the shared one)."""

    port: int | None
    timeout_s: float
    type: ClassVar[str] = "tcp"

    def describe(self) -> str:
        return f"tcp {_port_text(self.port)}"

    def as_record(self) -> dict[str, Any]:
        return {"type": self.type, "port": self.port, "timeout": self.timeout_s}


@dataclass(frozen=True)
class HttpProbe:
    """Wait until ``GET path`` on the container port answers ``status`` (and its body matches ``body``, a regex)."""

    port: int | None
    path: str
    status: int
    body: str | None
    timeout_s: float
    type: ClassVar[str] = "http"

    def describe(self) -> str:
        wanted = f"{self.status}" + (f" and a body matching /{self.body}/" if self.body else "")
        return f"http GET {self.path} {_port_text(self.port)} expecting {wanted}"

    def as_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "port": self.port,
            "path": self.path,
            "status": self.status,
            "body": self.body,
            "timeout": self.timeout_s,
        }


@dataclass(frozen=True)
class LogProbe:
    """Wait until a line of the container's output matches ``pattern`` (a Python regular expression)."""

    pattern: str
    timeout_s: float
    type: ClassVar[str] = "log"

    def describe(self) -> str:
        return f"log line matching /{self.pattern}/"

    def as_record(self) -> dict[str, Any]:
        return {"type": self.type, "pattern": self.pattern, "timeout": self.timeout_s}


@dataclass(frozen=True)
class CommandProbe:
    """Run ``argv`` once in a container of the client ``image``, next to the service; it passes on exit 0.

    The runner puts the service's address in the command's environment (SERVICE_HOST, SERVICE_PORT).
    """

    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(hash=False)
    timeout_s: float
    type: ClassVar[str] = "command"

    def describe(self) -> str:
        return f"command {list(self.argv)!r} in {self.image}"

    def as_record(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "image": self.image,
            "argv": list(self.argv),
            "env": dict(self.env),
            "timeout": self.timeout_s,
        }


@dataclass(frozen=True)
class NamedProbe:
    """A probe written in Python: a built-in (``kms``, ``vault``) or a plugin of the ``ci_images.smoke`` entry point
    group. ``plugin`` is True when the catalog wrote ``plugin: NAME``: then only an entry point is looked up, and
    only when the probe runs (the package may be installed where the smoke test runs and nowhere else)."""

    name: str
    plugin: bool
    timeout_s: float
    type: ClassVar[str] = "named"

    def describe(self) -> str:
        return f"plugin {self.name}" if self.plugin else self.name

    def as_record(self) -> dict[str, Any]:
        return {"type": "plugin" if self.plugin else self.type, "name": self.name, "timeout": self.timeout_s}


Probe = HealthcheckProbe | TcpProbe | HttpProbe | LogProbe | CommandProbe | NamedProbe


@dataclass(frozen=True)
class SmokeSpec:
    """What a smoke test of one entry runs: the service container's settings and the probes, in order.

    ``port`` is the container port the service listens on (None: the named probe's, or none at all); ``port_env``
    tells the service another port to listen on where the engine has no bridge network and the container shares
    the host's (``{port}`` in each value is replaced); ``env`` is the service's environment.
    """

    probes: tuple[Probe, ...]
    port: int | None = None
    port_env: Mapping[str, str] = field(default_factory=dict, hash=False)
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __str__(self) -> str:
        """``vault`` for ``smoke: vault``; the probe types in order otherwise (``healthcheck, http, command``)."""
        return ", ".join(p.name if isinstance(p, NamedProbe) else p.type for p in self.probes)

    @property
    def ports(self) -> tuple[int, ...]:
        """Every container port the probes reach, the shared one first."""
        wanted = [self.port] + [p.port for p in self.probes if isinstance(p, TcpProbe | HttpProbe)]
        return tuple(dict.fromkeys(p for p in wanted if p is not None))

    def as_record(self) -> dict[str, Any]:
        """What ``list-images --json`` shows for an entry's smoke test."""
        return {
            "port": self.port,
            "port_env": dict(self.port_env),
            "env": dict(self.env),
            "timeout": self.timeout_s,
            "probes": [p.as_record() for p in self.probes],
        }


def named_smoke(name: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> SmokeSpec:
    """``smoke: NAME``: one built-in or plugin probe with every setting its own."""
    return SmokeSpec(probes=(NamedProbe(name, plugin=False, timeout_s=timeout_s),), timeout_s=timeout_s)


def _timeout(settings: Mapping[str, Any], default: float = DEFAULT_TIMEOUT_S) -> float:
    return float(settings["timeout"]) if "timeout" in settings else default


def _port_text(port: int | None) -> str:
    return f"on port {port}" if port is not None else "on the service's port"


# -- parsing ---------------------------------------------------------------------------------------------------------


def parse_smoke(
    marked: Marked, name: str, path: Path_, value: Any, known: Collection[str]
) -> SmokeSpec | None:
    """The ``smoke:`` node at ``path`` as a SmokeSpec (None for ``smoke: null``); CatalogError at file:line else.

    ``known`` are the names a probe string may take besides the type words: the built-ins and the plugins installed
    here (the caller passes ``ci_images.smoke.plugins.known_probes()``; the catalog layer imports no adapter).
    The JSON Schema has already checked the node's shape.
    """
    if value is None:
        return None
    return _Parser(marked, name, tuple(known)).smoke(path, value)


class _Parser:
    def __init__(self, marked: Marked, name: str, known: tuple[str, ...]) -> None:
        self.marked = marked
        self.name = name
        self.known = known

    def error(self, path: Path_, message: str, fix: str, *, key: bool = False) -> CatalogError:
        return located_error(self.marked, self.name, path, message, fix, key=key)

    def smoke(self, path: Path_, value: Any) -> SmokeSpec:
        if isinstance(value, str):
            if value not in TYPE_WORDS and value not in self.known:
                # The shorthand of what catalogs have always said (smoke: kms): a typo is caught here, at its line.
                raise self.error(
                    path,
                    f"unknown smoke kind {value!r}",
                    f"use one of: {', '.join(self.known)} (or null for none); a probe declared in the catalog "
                    "(healthcheck, tcp, http, log, command: see README 'Adding an image'); or `plugin: "
                    f"{value}` for a plugin installed only where the smoke test runs",
                )
            settings: Mapping[str, Any] = {}
            probes: list[tuple[Path_, Any]] = [(path, value)]
        elif isinstance(value, list):
            settings = {}
            probes = [((*path, i), item) for i, item in enumerate(value)]
        else:
            settings = value
            probes = [((*path, "probes", i), item) for i, item in enumerate(value["probes"])]
        timeout = _timeout(settings)
        port = settings.get("port")
        port_env = dict(settings.get("port_env") or {})
        for env_name, template in port_env.items():
            if PORT_PLACEHOLDER not in template:
                raise self.error(
                    (*path, "port_env", env_name),
                    f"port_env {env_name}={template!r} does not contain {PORT_PLACEHOLDER}",
                    f"write where the service should listen with {PORT_PLACEHOLDER} for the port, "
                    f'e.g. PORT: "{PORT_PLACEHOLDER}" or LISTEN: "127.0.0.1:{PORT_PLACEHOLDER}"',
                )
        if port_env and port is None:
            raise self.error(
                (*path, "port_env"),
                "port_env without port: it moves the service's port, so say which one",
                "add `port: N` (the port the service listens on in its container)",
                key=True,
            )
        parsed = tuple(self.probe(probe_path, item, timeout) for probe_path, item in probes)
        spec = SmokeSpec(
            probes=parsed,
            port=port,
            port_env=port_env,
            env=dict(settings.get("env") or {}),
            timeout_s=timeout,
        )
        self.check_ports(spec, probes)
        return spec

    def probe(self, path: Path_, value: Any, timeout: float) -> Probe:
        if isinstance(value, str):
            return self.probe_word(path, value, timeout)
        ((kind, options),) = value.items()  # the schema allows exactly one key
        parse: Callable[[Path_, Any, float], Probe] = {
            "healthcheck": self.healthcheck_probe,
            "tcp": self.tcp_probe,
            "http": self.http_probe,
            "log": self.log_probe,
            "command": self.command_probe,
            "plugin": self.plugin_probe,
        }[kind]
        return parse((*path, kind), options, timeout)

    def probe_word(self, path: Path_, value: str, timeout: float) -> Probe:
        """A probe written as a bare string: a type with its defaults, or a built-in or installed plugin."""
        if value == "healthcheck":
            return HealthcheckProbe(timeout)
        if value == "tcp":
            return TcpProbe(None, timeout)
        if value == "http":
            return HttpProbe(None, DEFAULT_HTTP_PATH, DEFAULT_HTTP_STATUS, None, timeout)
        if value in _NEEDS_SETTINGS:
            raise self.error(path, f"a {value} probe needs settings", _NEEDS_SETTINGS[value])
        if value not in self.known:
            raise self.error(
                path,
                f"unknown smoke probe {value!r}",
                f"use healthcheck, tcp, http, a mapping (log:, command:, plugin:), or one of: "
                f"{', '.join(self.known)}",
            )
        return NamedProbe(value, plugin=False, timeout_s=timeout)

    def healthcheck_probe(self, where: Path_, options: Any, timeout: float) -> Probe:
        return HealthcheckProbe(_timeout(options or {}, timeout))

    def tcp_probe(self, where: Path_, options: Any, timeout: float) -> Probe:
        own = options or {}
        return TcpProbe(own.get("port"), _timeout(own, timeout))

    def http_probe(self, where: Path_, options: Any, timeout: float) -> Probe:
        own = options or {}
        probe_path = own.get("path", DEFAULT_HTTP_PATH)
        if not probe_path.startswith("/"):
            raise self.error(
                (*where, "path"),
                f"http path {probe_path!r} does not start with '/'",
                f"write it as it appears in the URL after the port: /{probe_path}",
            )
        body = own.get("body")
        if body is not None:
            self.check_regex((*where, "body"), body)
        status = own.get("status", DEFAULT_HTTP_STATUS)
        return HttpProbe(own.get("port"), probe_path, status, body, _timeout(own, timeout))

    def log_probe(self, where: Path_, options: Any, timeout: float) -> Probe:
        own = options if isinstance(options, dict) else {"pattern": options}
        pattern = own["pattern"]
        self.check_regex(where if isinstance(options, str) else (*where, "pattern"), pattern)
        return LogProbe(pattern, _timeout(own, timeout))

    def command_probe(self, where: Path_, options: Any, timeout: float) -> Probe:
        image = options["image"]
        if not _looks_like_reference(image):
            raise self.error(
                (*where, "image"),
                f"bad client image reference {image!r}",
                "write NAME[:TAG] or NAME@sha256:DIGEST, e.g. docker.io/library/redis:7.2 (pin it by digest)",
            )
        env = dict(options.get("env") or {})
        return CommandProbe(image, tuple(options["argv"]), env, _timeout(options, timeout))

    def plugin_probe(self, where: Path_, options: Any, timeout: float) -> Probe:
        plugin_name = options if isinstance(options, str) else options["name"]
        if not _PLUGIN_NAME_RE.match(plugin_name):
            raise self.error(
                where if isinstance(options, str) else (*where, "name"),
                f"bad plugin name {plugin_name!r}",
                "write the entry point's name: letters, digits, '.', '_' and '-'",
            )
        own = options if isinstance(options, dict) else {}
        return NamedProbe(plugin_name, plugin=True, timeout_s=_timeout(own, timeout))

    def check_regex(self, path: Path_, pattern: str) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise self.error(
                path,
                f"bad regular expression {pattern!r}: {exc}",
                "write a Python regular expression; quote it in YAML, and escape a literal '.' or '(' with '\\\\'",
            ) from exc

    def check_ports(self, spec: SmokeSpec, probes: list[tuple[Path_, Any]]) -> None:
        """A tcp, http or command probe needs a port: its own, the shared ``port``, or a named probe's."""
        if spec.port is not None or any(isinstance(p, NamedProbe) for p in spec.probes):
            return  # a built-in or plugin says its own port when it runs
        for (probe_path, _), probe in zip(probes, spec.probes, strict=True):
            needs = isinstance(probe, CommandProbe) or (
                isinstance(probe, TcpProbe | HttpProbe) and probe.port is None
            )
            if needs:
                raise self.error(
                    probe_path,
                    f"the {probe.type} probe has no port to reach",
                    "add `port: N` (the port the service listens on in its container) next to `probes:`"
                    + ("" if isinstance(probe, CommandProbe) else f", or `port:` to this {probe.type} probe"),
                )


# docker's reference grammar, loosely: [host[:port]/]path[:tag][@sha256:hex]. The engine has the last word.
_REFERENCE_RE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def _looks_like_reference(image: str) -> bool:
    return bool(_REFERENCE_RE.match(image))


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TYPE_WORDS",
    "CommandProbe",
    "HealthcheckProbe",
    "HttpProbe",
    "LogProbe",
    "NamedProbe",
    "Probe",
    "SmokeSpec",
    "TcpProbe",
    "named_smoke",
    "parse_smoke",
]
