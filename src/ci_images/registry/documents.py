"""Image documents on a registry: the multi-platform index a push writes, and what a tag holds (its digest, labels
and platforms), read through the one registry client."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci_images.errors import RegistryError, UsageError
from ci_images.oci import (
    INDEX_MEDIA_TYPES,
    OCI_INDEX,
    Descriptor,
    canonical_json,
    descriptor_json,
    join_platform,
)
from ci_images.registry.client import RegistryClient


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
