"""OCI images on a registry: push an engine image by digest, build indexes, tag them, read what a tag holds.

Layers are gzipped deterministically (no name, mtime 0, fixed level), so rebuilding identical layers gives identical
blob digests and a second push uploads nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ci_images.errors import BuildError, RegistryError, UsageError
from ci_images.registry.client import INDEX_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST, RegistryClient

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
GZIP_LEVEL = 6  # fixed: a different level gives different bytes, hence different layer digests
_CHUNK = 1 << 20


class SavesImages(Protocol):
    """What push_engine_image needs from the engine (ci_images.engine.Engine): a `docker save` tar stream."""

    def save(self, image: str) -> Iterable[bytes]: ...


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


def gzip_deterministic(source: IO[bytes], target: IO[bytes]) -> tuple[str, str, int]:
    """Gzip ``source`` into ``target``; returns (digest of the uncompressed data, digest of the gzip, gzip size)."""
    plain = hashlib.sha256()
    hashing = _HashingWriter(target)
    # filename="" and mtime=0 keep the header free of anything that changes between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        while chunk := source.read(_CHUNK):
            plain.update(chunk)
            gz.write(chunk)
    return "sha256:" + plain.hexdigest(), "sha256:" + hashing.sha.hexdigest(), hashing.size


class _HashingWriter:
    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _dumps(document: Mapping[str, Any]) -> bytes:
    # Fixed key order and separators: the same content always gives the same manifest digest.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def push_engine_image(
    engine: SavesImages, client: RegistryClient, repo: str, image: str, *, platform: str
) -> Descriptor:
    """Upload ``image`` from the engine as an OCI image manifest stored BY DIGEST (no tag is left behind)."""
    with tempfile.TemporaryDirectory(prefix="ci-images-save-") as tmp:
        archive = Path(tmp) / "image.tar"
        with archive.open("wb") as out:
            for chunk in engine.save(image):
                out.write(chunk)
        with tarfile.open(archive) as tar:
            entries = json.loads(_member_bytes(tar, "manifest.json", image))
            if not entries:
                raise BuildError(f"`docker save {image}` produced no image")
            config_bytes = _member_bytes(tar, entries[0]["Config"], image)
            config = json.loads(config_bytes)
            actual = join_platform(config)
            if actual != join_platform(split_platform(platform)):
                raise BuildError(
                    f"image {image} is {actual}, expected {platform}",
                    fix="build it with the requested platform (the engine may have reused another platform's base)",
                )
            diff_ids: list[str] = config.get("rootfs", {}).get("diff_ids", [])
            layer_paths: list[str] = entries[0]["Layers"]
            if len(diff_ids) != len(layer_paths):
                raise BuildError(
                    f"`docker save {image}`: {len(layer_paths)} layers but {len(diff_ids)} diff_ids"
                )
            layers: list[tuple[Descriptor, Path]] = []
            done: dict[str, tuple[Descriptor, Path]] = {}
            for index, (member, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True)):
                if member in done:  # the same layer twice (e.g. two identical empty layers)
                    layers.append(done[member])
                    continue
                gz_path = Path(tmp) / f"layer-{index}.tar.gz"
                source = tar.extractfile(member)
                if source is None:
                    raise BuildError(f"`docker save {image}`: {member} is not a file")
                with source, gz_path.open("wb") as target:
                    plain, digest, size = gzip_deterministic(source, target)
                if plain != diff_id:
                    raise BuildError(
                        f"`docker save {image}`: {member} has digest {plain}, config says {diff_id}"
                    )
                done[member] = (Descriptor(OCI_LAYER_GZIP, digest, size), gz_path)
                layers.append(done[member])
        config_desc = Descriptor(
            OCI_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes)
        )
        client.upload_blob(repo, config_desc.digest, config_bytes)
        for layer, path in layers:
            client.upload_blob(repo, layer.digest, path)
        manifest = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _descriptor_json(config_desc),
                "layers": [_descriptor_json(layer) for layer, _ in layers],
            }
        )
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        client.put_manifest(repo, digest, manifest, OCI_MANIFEST)
        return Descriptor(OCI_MANIFEST, digest, len(manifest), platform)


def _member_bytes(tar: tarfile.TarFile, name: str, image: str) -> bytes:
    try:
        source = tar.extractfile(name)
    except KeyError:
        source = None
    if source is None:
        raise BuildError(
            f"`docker save {image}` has no {name}", fix="use an engine that writes docker's save format"
        )
    with source:
        return source.read()


def _descriptor_json(descriptor: Descriptor, *, with_platform: bool = False) -> dict[str, Any]:
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
        "manifests": [_descriptor_json(m, with_platform=True) for m in manifests],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return _dumps(document), OCI_INDEX


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


def read_labels(client: RegistryClient, repo: str, ref: str) -> tuple[str, dict[str, str]] | None:
    """What ``ref`` holds now: (digest, labels), index annotations winning over the first image's config labels."""
    found = _manifest_json(client, repo, ref)
    if found is None:
        return None
    digest, media_type, document = found
    annotations: dict[str, str] = dict(document.get("annotations") or {})
    manifest = document
    if media_type in INDEX_MEDIA_TYPES:
        entries = _platform_entries(document)
        if not entries:
            return digest, annotations
        child = _manifest_json(client, repo, entries[0]["digest"])
        if child is None:
            raise RegistryError(f"{client.host}/{repo}:{ref} lists {entries[0]['digest']}, which is missing")
        manifest = child[2]
    labels: dict[str, str] = dict(_config(client, repo, manifest).get("config", {}).get("Labels") or {})
    return digest, {**labels, **annotations}


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


__all__ = [
    "GZIP_LEVEL",
    "OCI_CONFIG",
    "OCI_LAYER_GZIP",
    "Descriptor",
    "SavesImages",
    "gzip_deterministic",
    "join_platform",
    "make_index",
    "platform_digests",
    "push_engine_image",
    "put_tags",
    "read_labels",
    "split_platform",
]
