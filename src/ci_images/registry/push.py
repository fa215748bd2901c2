"""Upload an engine image to a registry by digest: `docker save`, each layer gzipped deterministically (no name,
mtime 0, fixed level) so identical layers give identical blob digests and a second push uploads nothing.

The layers a build has from its base image are upstream's own: their compressed blobs are taken from upstream as
they are (copied registry to registry, HEAD first), never compressed again, so they keep upstream's digests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ci_images.errors import BuildError, RegistryError
from ci_images.oci import (
    GZIP_LAYER_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    canonical_json,
    descriptor_json,
    digest_of,
    join_platform,
    sha256_digest,
    split_platform,
)
from ci_images.registry.client import RegistryClient

# Layers an OCI manifest can reference as upstream has them (gzip under Docker's name goes by the OCI name).
_REUSABLE_LAYER_TYPES = GZIP_LAYER_TYPES | {OCI_LAYER, OCI_LAYER_ZSTD}


@dataclass(frozen=True)
class BaseLayers:
    """Where a build's base image lives upstream, and (read on first use) its layers by diff_id."""

    host: str
    repo: str
    client: Callable[[], RegistryClient]  # the calling thread's upstream client
    layers: Callable[[], Mapping[str, Descriptor]]  # diff_id -> upstream's compressed layer


def read_base_layers(client: RegistryClient, repo: str, digest: str) -> dict[str, Descriptor]:
    """diff_id -> compressed layer of the single-platform manifest ``repo@digest`` (a manifest GET and a config
    blob GET). Layers of a kind this module does not write into OCI manifests are left out (they get compressed)."""
    got = client.get_manifest(repo, digest)
    if got is None:
        raise RegistryError(f"{client.host}/{repo}@{digest} does not exist", fix="run again: upstream moved")
    manifest = json.loads(got[1])
    config = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
    diff_ids: list[str] = config.get("rootfs", {}).get("diff_ids", [])
    layers: list[dict[str, object]] = manifest.get("layers") or []
    if len(diff_ids) != len(layers):
        return {}
    reusable: dict[str, Descriptor] = {}
    for diff_id, layer in zip(diff_ids, layers, strict=True):
        media_type = str(layer.get("mediaType") or "")
        if media_type in _REUSABLE_LAYER_TYPES and not layer.get("urls"):
            media_type = OCI_LAYER_GZIP if media_type in GZIP_LAYER_TYPES else media_type
            reusable[diff_id] = Descriptor(media_type, str(layer["digest"]), int(str(layer["size"])))
    return reusable


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
    return digest_of(plain), digest_of(hashing.sha), hashing.size


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
    engine: SavesImages,
    client: RegistryClient,
    repo: str,
    image: str,
    *,
    platform: str,
    base: BaseLayers | None = None,
) -> Descriptor:
    """Upload ``image`` from the engine as an OCI image manifest stored BY DIGEST (no tag is left behind).

    Layers ``base`` has (by diff_id) are upstream's compressed blobs, copied from upstream; the rest is compressed.
    """
    reused: Mapping[str, Descriptor] = base.layers() if base is not None else {}
    with tempfile.TemporaryDirectory(prefix="ci-images-save-") as tmp:
        folder = Path(tmp)
        archive = folder / "image.tar"
        with archive.open("wb") as out:
            for chunk in engine.save(image):
                out.write(chunk)
        with tarfile.open(archive) as tar:
            config_bytes, members = _saved_image(tar, image, platform)
            layers = _layers(tar, image, members, reused, folder)
        return _upload(client, repo, config_bytes, layers, base, platform)


# A layer of a saved image: its descriptor, and the gzip file to upload (None: upstream's blob, copied from upstream).
_Layer = tuple[Descriptor, Path | None]


def _saved_image(tar: tarfile.TarFile, image: str, platform: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The config of a `docker save` archive, checked against ``platform``, and its (layer member, diff_id) pairs."""
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
        raise BuildError(f"`docker save {image}`: {len(layer_paths)} layers but {len(diff_ids)} diff_ids")
    return config_bytes, list(zip(layer_paths, diff_ids, strict=True))


def _layers(
    tar: tarfile.TarFile,
    image: str,
    members: list[tuple[str, str]],
    reused: Mapping[str, Descriptor],
    folder: Path,
) -> list[_Layer]:
    """Each layer in order: upstream's own blob where the base has it, else compressed deterministically."""
    layers: list[_Layer] = []
    done: dict[str, _Layer] = {}
    for index, (member, diff_id) in enumerate(members):
        if member not in done:  # the same layer twice (e.g. two identical empty layers) is compressed once
            if diff_id in reused:
                done[member] = (reused[diff_id], None)
            else:
                done[member] = _compress(tar, image, member, diff_id, folder / f"layer-{index}.tar.gz")
        layers.append(done[member])
    return layers


def _compress(tar: tarfile.TarFile, image: str, member: str, diff_id: str, gz_path: Path) -> _Layer:
    source = tar.extractfile(member)
    if source is None:
        raise BuildError(f"`docker save {image}`: {member} is not a file")
    with source, gz_path.open("wb") as target:
        plain, digest, size = gzip_deterministic(source, target)
    if plain != diff_id:
        raise BuildError(f"`docker save {image}`: {member} has digest {plain}, config says {diff_id}")
    return Descriptor(OCI_LAYER_GZIP, digest, size), gz_path


def _upload(
    client: RegistryClient,
    repo: str,
    config_bytes: bytes,
    layers: list[_Layer],
    base: BaseLayers | None,
    platform: str,
) -> Descriptor:
    """Config and layers first (each once), then the manifest by digest: a registry refuses a manifest whose blobs
    it does not hold."""
    config_desc = Descriptor(OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes))
    client.upload_blob(repo, config_desc.digest, config_bytes)
    for layer, path in {layer.digest: (layer, path) for layer, path in layers}.values():
        if path is not None:
            client.upload_blob(repo, layer.digest, path)
        else:
            assert base is not None
            _copy_base_layer(client, repo, base, layer)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor_json(config_desc),
            "layers": [descriptor_json(layer) for layer, _ in layers],
        }
    )
    digest = client.put_manifest(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
    return Descriptor(OCI_MANIFEST, digest, len(manifest), platform)


def _copy_base_layer(client: RegistryClient, repo: str, base: BaseLayers, layer: Descriptor) -> None:
    """Upstream's compressed layer into ``repo``: HEAD first, mounted within one registry, else streamed."""
    upstream = base.client()
    client.upload_blob_stream(
        repo,
        layer.digest,
        layer.size,
        lambda: upstream.open_blob(base.repo, layer.digest, size=layer.size),
        mount_from=base.repo if base.host == client.host else None,
    )


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
