"""Named probes: the built-ins (``kms``, ``vault``) and plugins found through the ``ci_images.smoke`` entry points.

A plugin is a package that declares, in its pyproject.toml::

    [project.entry-points."ci_images.smoke"]
    redis = "my_probes.redis"            # a module, or "my_probes.redis:probe" for one object

What the entry point loads has the names a built-in module has (``kms.py``): ``probe(service, deadline, *, env,
image_env)`` (required: raise ``ci_images.smoke.common.ProbeFailed`` to fail), and optionally ``CONTAINER_PORT``
(the port the service listens on in its container), ``port_env(port)`` (the variables that move it to another port)
and ``environment()`` (the service's environment). A bare function is taken as ``probe`` itself. The catalog's
``port``, ``port_env`` and ``env`` override these. Looked up with importlib.metadata, as pytest finds its plugins.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ci_images.errors import UsageError
from ci_images.smoke import KINDS

ENTRY_POINT_GROUP = "ci_images.smoke"
INSTALL_FIX = (
    "install the package that provides it where ci-images runs (for `nox -s ci-images`: in that session's "
    "environment), or fix the name in the catalog"
)


@dataclass(frozen=True)
class NamedImplementation:
    """A loaded built-in or plugin: what to call and the service settings it brings."""

    name: str
    origin: str  # "built-in" or "plugin NAME from DIST VERSION (VALUE)": for messages
    builtin: bool
    probe: Callable[..., None]
    container_port: int | None
    port_env: Callable[[int], Mapping[str, str]] | None
    environment: Callable[[], Mapping[str, str]] | None


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def plugin_names() -> tuple[str, ...]:
    """The names of the installed probe plugins, sorted."""
    return tuple(sorted({ep.name for ep in _entry_points()}))


def known_probes() -> tuple[str, ...]:
    """What a catalog's ``smoke:`` may name: the built-ins, then the installed plugins (load_catalog's
    ``smoke_kinds``). A plugin with a built-in's name is reachable only as ``plugin: NAME``."""
    return KINDS + tuple(n for n in plugin_names() if n not in KINDS)


def resolve(name: str, *, plugin: bool) -> NamedImplementation:
    """The built-in ``name`` (unless ``plugin``), else the entry point ``name``; UsageError naming it if missing or
    unloadable."""
    if not plugin and name in KINDS:
        module = importlib.import_module(f"ci_images.smoke.{name}")
        return _implementation(name, "built-in", module, builtin=True)
    found = [ep for ep in _entry_points() if ep.name == name]
    if not found:
        installed = ", ".join(plugin_names()) or "none"
        raise UsageError(
            f"smoke probe plugin {name!r} is not installed: no package declares it in the entry point group "
            f"{ENTRY_POINT_GROUP} (installed plugins: {installed})",
            fix=INSTALL_FIX,
        )
    if len({ep.value for ep in found}) > 1:
        raise UsageError(
            f"smoke probe plugin {name!r} is declared by several packages: "
            + "; ".join(f"{_dist(ep)} ({ep.value})" for ep in found),
            fix="uninstall all but one of them",
        )
    entry = found[0]
    origin = f"plugin {name!r} from {_dist(entry)} ({entry.value})"
    try:
        loaded = entry.load()
    except Exception as exc:
        raise UsageError(
            f"smoke probe {origin} could not be loaded: {type(exc).__name__}: {exc}",
            fix=f"fix or reinstall {_dist(entry)}; `python -c 'import {entry.module}'` shows the whole error",
        ) from exc
    return _implementation(name, origin, loaded, builtin=False)


def _dist(entry: metadata.EntryPoint) -> str:
    dist = entry.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def _implementation(name: str, origin: str, loaded: Any, *, builtin: bool) -> NamedImplementation:
    probe = getattr(loaded, "probe", None)
    if probe is None and callable(loaded) and not isinstance(loaded, type):
        probe = loaded
    if not callable(probe):
        raise UsageError(
            f"smoke probe {origin} has no probe(service, deadline, *, env, image_env) to call",
            fix="point the entry point at a module or object with a `probe` function, or at the function itself",
        )
    port = getattr(loaded, "CONTAINER_PORT", None)
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        raise UsageError(
            f"smoke probe {origin}: CONTAINER_PORT is {port!r}, not a port number",
            fix="set CONTAINER_PORT to the port the service listens on in its container (1-65535)",
        )
    port_env = getattr(loaded, "port_env", None)
    environment = getattr(loaded, "environment", None)
    return NamedImplementation(
        name=name,
        origin=origin,
        builtin=builtin,
        probe=probe,
        container_port=port,
        port_env=port_env if callable(port_env) else None,
        environment=environment if callable(environment) else None,
    )


__all__ = ["ENTRY_POINT_GROUP", "NamedImplementation", "known_probes", "plugin_names", "resolve"]
