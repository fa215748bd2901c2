"""What carrying out a Dockerfile produces, as data: the steps that write layers, the history lines, the new config,
and the build-arg bookkeeping (moby/moby ``builder/dockerfile/buildargs.go``) the instructions expand with.

Split from the dispatch (``stage.py``) and the entry point (``config.py``) so that both, and ``layers.py`` and
``sources.py``, share these types without importing each other.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
# Build args usable without an ARG line when the caller passes them (buildargs.go builtinAllowedBuildArgs).
BUILTIN_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
    }
)
# The image config fields an OCI/Docker image config keeps (BuildKit's dockerspec.DockerOCIImageConfig); the
# Docker-only runtime fields a classic build leaves in ("Hostname", "Image", "AttachStdin"...) are dropped.
CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)
HISTORY_COMMENT = "ci-images assemble"


@dataclass(frozen=True)
class CopyStep:
    """One COPY or ADD, expanded: what layers.py turns into one layer."""

    keyword: str  # "COPY" or "ADD"
    line: int
    sources: tuple[str, ...]  # relative to the build context, as written after expansion
    dest: str  # absolute; a trailing "/" is kept (it means "into this directory")
    chown: tuple[int, int] | None
    chmod: int | None
    known_dirs: tuple[
        str, ...
    ]  # directories certain to exist before this step: "/" and every working directory
    created_by: str


@dataclass(frozen=True)
class HistoryStep:
    created_by: str
    empty_layer: bool


@dataclass(frozen=True)
class Recipe:
    """A Dockerfile carried out on a base config: the new ``config`` object, the history lines (one per instruction
    after FROM; the non-empty ones belong to ``copies``, in order) and the expanded FROM."""

    base_name: str
    config: Mapping[str, Any]
    history: tuple[HistoryStep, ...]
    copies: tuple[CopyStep, ...]


@dataclass
class BuildArgs:
    """moby's BuildArgs: values given by the caller, ARGs declared before FROM (meta) and in the stage (allowed)."""

    given: Mapping[str, str]
    meta: dict[str, str | None] = field(default_factory=dict)
    allowed: dict[str, str | None] = field(default_factory=dict)

    def value(self, key: str, mapping: Mapping[str, str | None]) -> str | None:
        """getBuildArg: the caller's value, else the ARG's default, else (no default) the meta ARG's."""
        if key in self.given:
            return self.given[key]
        default = mapping.get(key)
        if default is None:
            return self.meta.get(key)
        return default

    def _all(self, mapping: Mapping[str, str | None]) -> dict[str, str]:
        values: dict[str, str] = {}
        for key in [*mapping, *sorted(BUILTIN_ARGS)]:
            value = self.value(key, mapping)
            if value is not None:
                values[key] = value
        return values

    def all_allowed(self) -> dict[str, str]:
        return self._all(self.allowed)

    def all_meta(self) -> dict[str, str]:
        return self._all(self.meta)


def env_map(env: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        values[key] = value
    return values


def clean_path(path: str) -> str:
    """Go's path.Clean (for the absolute paths of an image): "/a//b/../c/" -> "/a/c"."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def rfc3339(epoch: int) -> str:
    """``epoch`` as Go's time.Time marshals a UTC time of whole seconds: 2024-05-01T12:00:00Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
