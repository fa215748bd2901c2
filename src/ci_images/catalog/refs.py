"""Image references: parsing, Docker Hub naming and upstream-mirror rewriting. Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)

# The distribution reference grammar, reduced to what catalogs use.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$"
)


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


def is_valid_host(host: str) -> bool:
    if not _HOST_RE.match(host):
        return False
    after_address = host.rpartition("]")[2]  # an IPv6 address has colons of its own
    _, colon, port = after_address.rpartition(":")
    return not colon or 0 < int(port) <= 65535


@dataclass(frozen=True)
class Repository:
    """A repository on a registry: ``host`` as written (``docker.io``, ``ghcr.io``, ``127.0.0.1:5000``) and ``path``."""

    host: str
    path: str

    @property
    def api_host(self) -> str:
        """The host to send distribution API requests to (Docker Hub's API lives elsewhere)."""
        return DOCKER_HUB_API if self.host in DOCKER_HUB_ALIASES else self.host

    @property
    def is_docker_hub(self) -> bool:
        return self.host in DOCKER_HUB_ALIASES

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"

    def with_tag(self, tag: str) -> str:
        return f"{self}:{tag}"

    def with_digest(self, digest: str) -> str:
        return f"{self}@{digest}"


def _looks_like_host(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost"


def parse_repository(name: str) -> Repository:
    """Parse ``[host/]path`` the way docker does: no host means Docker Hub, one component means ``library/``.

    Raises ValueError with a readable reason.
    """
    if not name or name != name.strip():
        raise ValueError("empty repository name")
    if "@" in name:
        raise ValueError("a repository must not carry a digest (@sha256:...)")
    first, sep, rest = name.partition("/")
    if sep and _looks_like_host(first):
        host, path = first, rest
        if not is_valid_host(host):
            raise ValueError(f"invalid registry host {host!r}")
    else:
        host, path = DOCKER_HUB, name
    if ":" in path:
        raise ValueError("a repository must not carry a tag: put versions under 'versions'")
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _REPO_RE.match(path):
        raise ValueError(
            f"invalid repository path {path!r}: use lowercase letters, digits and separators (. _ -) between '/'"
        )
    return Repository(host, path)


def apply_mirror(repo: Repository, mirror: str | None) -> Repository:
    """Rewrite a Docker Hub repository to a pull-through mirror: ``docker.io/ns/name`` -> ``mirror/ns/name``.

    ``docker.io/name`` is already stored as ``library/name`` so it becomes ``mirror/library/name``. Other registries are
    left alone: a mirror only stands in for Docker Hub.
    """
    if not mirror or not repo.is_docker_hub:
        return repo
    return Repository(mirror, repo.path)


def normalize_mirror(value: str) -> str:
    """Accept ``host[:port]`` (an ``https://`` prefix or trailing slash is tolerated); ValueError otherwise."""
    host = value.strip()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.rstrip("/")
    if not host or "/" in host or not is_valid_host(host):
        raise ValueError(f"{value!r} is not host[:port]")
    return host
