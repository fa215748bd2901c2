"""The registry's words, in one leaf that everything may import and that imports nothing of the tool but its
errors: media types, digests, descriptors, platforms, canonical and Go-style JSON, and the loopback conventions
(the address, the embedded registry's port, docker's certs.d, the plain-HTTP rule).

Like regclient's ``types`` package: the vocabulary of the distribution and image specs, kept apart from the
client that speaks it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_images.errors import RegistryError, UsageError

# ---- media types ----------------------------------------------------------------------------------------------

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_MEDIA_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
# The same gzip tar bytes under Docker's name and OCI's.
GZIP_LAYER_TYPES = frozenset({OCI_LAYER_GZIP, DOCKER_LAYER_GZIP})

# Attestation manifests (buildx provenance) sit in indexes under this platform: not images.
UNKNOWN_PLATFORM = "unknown/unknown"

# ---- digests --------------------------------------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return digest_of(hashlib.sha256(data))


def digest_of(hasher: Any) -> str:
    """``sha256:<hex>`` of a hashlib sha256 object fed piece by piece (a streamed blob, a hashed recipe)."""
    return f"sha256:{hasher.hexdigest()}"


def short_digest(digest: str | None, *, empty: str = "-") -> str:
    """The first 12 hex digits, as docker and the reports show a digest (or a ``sha256:`` key fingerprint)."""
    if not digest:
        return empty
    return digest.split(":", 1)[-1][:12]


def referrers_tag(digest: str) -> str:
    """The referrers fallback tag of ``digest``, ``sha256-<hex>`` (OCI distribution spec 1.1, "referrers tag
    schema"), where a registry without the referrers API (GHCR) keeps the index of what refers to it."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def digest_tag(digest: str, suffix: str) -> str:
    """cosign's tag for what is attached to ``digest``: ``sha256-<hex>.sig``, ``sha256-<hex>.att``."""
    return f"{referrers_tag(digest)}.{suffix}"


# ---- documents ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None


def descriptor_json(descriptor: Descriptor, *, with_platform: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {
        "mediaType": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
    }
    if with_platform:
        if descriptor.platform is None:
            raise UsageError(f"index entry {descriptor.digest} has no platform")
        result["platform"] = split_platform(descriptor.platform)
    return result


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Fixed key order and separators: the same content always gives the same manifest digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def go_json(document: Mapping[str, Any]) -> bytes:
    """JSON as Go's encoding/json writes it: fields in declaration order (dicts here keep theirs), no spaces, and
    <, >, &, U+2028 and U+2029 escaped as \\uXXXX (what cosign's documents hash and sign)."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


# ---- platforms ------------------------------------------------------------------------------------------------


def split_platform(platform: str) -> dict[str, str]:
    """``linux/arm/v7`` -> {"os": "linux", "architecture": "arm", "variant": "v7"}."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"platform {platform!r} is not OS/ARCH[/VARIANT]", fix="write it like linux/amd64")
    result = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


def join_platform(spec: Mapping[str, Any]) -> str:
    """The inverse of split_platform; arm64's default variant v8 is dropped (as containerd normalises it)."""
    os_name, arch, variant = spec.get("os", ""), spec.get("architecture", ""), spec.get("variant") or ""
    if arch == "arm64" and variant == "v8":
        variant = ""
    return f"{os_name}/{arch}" + (f"/{variant}" if variant else "")


def require_platforms(where: str, wanted: Collection[str], have: Collection[str], *, fix: str) -> None:
    """RegistryError when ``where`` (an upstream image) lacks a platform the entry asks for."""
    missing = sorted(set(wanted) - set(have))
    if missing:
        raise RegistryError(
            f"upstream {where} has no image for {', '.join(missing)} (it has {', '.join(sorted(have)) or 'none'})",
            fix=fix,
        )


# ---- loopback ------------------------------------------------------------------------------------------------

LOOPBACK = "127.0.0.1"  # every registry and service the tool starts listens here only
LOCAL_REGISTRY_PORT = 5000  # the embedded `local` registry's port unless `local:PORT`
CERTS_D = Path(
    "/etc/docker/certs.d"
)  # the engine's per-registry CAs: HOST[:PORT]/ca.crt; the tool reads them too


def certs_d_ca(host: str) -> Path:
    """Where the engine (and so the tool) finds the CA of registry ``host`` (``HOST[:PORT]``)."""
    return CERTS_D / host / "ca.crt"


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, with or without a port."""
    name = host.lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse_plain_http(host: str, where: str) -> None:
    """Plain HTTP only to loopback: anything else must be TLS, verified (UsageError, exit 2)."""
    if not is_loopback_host(host):
        raise UsageError(
            f"{where}: plain HTTP is only allowed for loopback registries, not {host}",
            fix=f"use TLS and trust the registry's CA in {certs_d_ca(host)} (or SSL_CERT_FILE)",
        )


def free_loopback_port() -> int:
    """A port nothing listens on right now on the loopback address (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
