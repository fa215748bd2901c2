"""OCI images on a registry: push an engine image by digest, build indexes, tag them, read what a tag holds.

Layers are gzipped deterministically (no name, mtime 0, fixed level), so rebuilding identical layers gives identical
blob digests and a second push uploads nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci_images.errors import RegistryError, UsageError
from ci_images.registry.client import INDEX_MEDIA_TYPES, OCI_INDEX, RegistryClient

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None


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


def canonical_json(document: Mapping[str, Any]) -> bytes:
    # Fixed key order and separators: the same content always gives the same manifest digest.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


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


def make_index(manifests: Sequence[Descriptor], annotations: Mapping[str, str]) -> tuple[bytes, str]:
    """An OCI image index over per-platform manifests (each must carry its platform)."""
    platforms = [m.platform for m in manifests]
    if len(set(platforms)) != len(platforms):
        raise UsageError(f"index lists a platform twice: {platforms}")
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor_json(m, with_platform=True) for m in manifests],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return canonical_json(document), OCI_INDEX


def put_tags(client: RegistryClient, repo: str, body: bytes, media_type: str, tags: Sequence[str]) -> str:
    """PUT one manifest or index under each tag (or only by digest when there are none); returns its digest."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    for ref in tags or [digest]:
        client.put_manifest(repo, ref, body, media_type)
    return digest


def _manifest_json(client: RegistryClient, repo: str, ref: str) -> tuple[str, str, dict[str, Any]] | None:
    got = client.get_manifest(repo, ref)
    if got is None:
        return None
    info, body = got
    document: dict[str, Any] = json.loads(body)
    return info.digest, document.get("mediaType") or info.media_type, document


def _platform_entries(index: Mapping[str, Any]) -> list[dict[str, Any]]:
    # Attestation manifests (buildx provenance) sit in indexes as platform unknown/unknown: not images.
    return [m for m in index.get("manifests", []) if m.get("platform", {}).get("os", "unknown") != "unknown"]


def _config(client: RegistryClient, repo: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
    return config


@dataclass(frozen=True)
class Held:
    """What a tag holds: its digest, its labels (index annotations winning over the first image's config labels),
    and the image platforms it lists."""

    digest: str
    labels: dict[str, str]
    platforms: tuple[str, ...]


def read_held(client: RegistryClient, repo: str, ref: str) -> Held | None:
    """What ``ref`` holds now, or None when it does not exist."""
    found = _manifest_json(client, repo, ref)
    if found is None:
        return None
    digest, media_type, document = found
    annotations: dict[str, str] = dict(document.get("annotations") or {})
    manifest = document
    platforms: tuple[str, ...] = ()
    if media_type in INDEX_MEDIA_TYPES:
        entries = _platform_entries(document)
        platforms = tuple(join_platform(e["platform"]) for e in entries)
        if not entries:
            return Held(digest, annotations, platforms)
        child = _manifest_json(client, repo, entries[0]["digest"])
        if child is None:
            raise RegistryError(f"{client.host}/{repo}:{ref} lists {entries[0]['digest']}, which is missing")
        manifest = child[2]
    config = _config(client, repo, manifest)
    if media_type not in INDEX_MEDIA_TYPES:
        platforms = (join_platform(config),)
    labels: dict[str, str] = dict(config.get("config", {}).get("Labels") or {})
    return Held(digest, {**labels, **annotations}, platforms)


def read_labels(client: RegistryClient, repo: str, ref: str) -> tuple[str, dict[str, str]] | None:
    """What ``ref`` holds now: (digest, labels), index annotations winning over the first image's config labels."""
    held = read_held(client, repo, ref)
    return None if held is None else (held.digest, held.labels)


def manifest_platform(client: RegistryClient, repo: str, body: bytes) -> str:
    """The platform of a single image manifest's bytes, from its config (a blob GET, not a pull)."""
    return join_platform(_config(client, repo, json.loads(body)))


def index_platforms(body: bytes) -> dict[str, str] | None:
    """{"linux/amd64": manifest digest, ...} of an index's bytes; None when the bytes are a single manifest."""
    document: dict[str, Any] = json.loads(body)
    if (document.get("mediaType") or "") not in INDEX_MEDIA_TYPES and "manifests" not in document:
        return None
    return {join_platform(m["platform"]): m["digest"] for m in _platform_entries(document)}


def platform_digests(client: RegistryClient, repo: str, ref: str) -> dict[str, str]:
    """{"linux/amd64": manifest digest, ...} of an index, or the single manifest's own platform."""
    found = _manifest_json(client, repo, ref)
    if found is None:
        raise RegistryError(
            f"{client.host}/{repo}:{ref} does not exist", fix="check the image name and tag on the registry"
        )
    digest, media_type, document = found
    if media_type in INDEX_MEDIA_TYPES:
        return {join_platform(m["platform"]): m["digest"] for m in _platform_entries(document)}
    return {join_platform(_config(client, repo, document)): digest}
