"""Upload an engine image to a registry by digest: `docker save`, each layer gzipped deterministically (no name,
mtime 0, fixed level) so identical layers give identical blob digests and a second push uploads nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

from ci_images.errors import BuildError
from ci_images.registry.client import OCI_MANIFEST, RegistryClient
from ci_images.registry.oci import (
    OCI_CONFIG,
    Descriptor,
    canonical_json,
    descriptor_json,
    join_platform,
    split_platform,
)

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


GZIP_LEVEL = 6  # fixed: a different level gives different bytes, hence different layer digests


_CHUNK = 1 << 20


class SavesImages(Protocol):
    """What push_engine_image needs from the engine (ci_images.engine.Engine): a `docker save` tar stream."""

    def save(self, image: str) -> Iterable[bytes]: ...


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
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor_json(config_desc),
                "layers": [descriptor_json(layer) for layer, _ in layers],
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
