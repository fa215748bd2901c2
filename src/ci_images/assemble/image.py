"""The registry documents of an assembled image: its config, its manifest, and an index over its platforms.

Like crane's ``mutate``/``append`` (google/go-containerregistry ``pkg/v1/mutate``): the base's layers are referenced by
their descriptors unchanged (no byte of them is read), the new layers follow, and the manifest stays in the base's
media-type family: a Docker v2 base gives a Docker v2 manifest with Docker layer and config types, an OCI base an
OCI manifest. Documents are canonical JSON (sorted keys, no spaces): the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_images.assemble.config import Recipe, evaluate, image_config
from ci_images.assemble.dockerfile import Dockerfile
from ci_images.assemble.layers import Layer, build_layers
from ci_images.errors import BuildError
from ci_images.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    canonical_json,
    join_platform,
    sha256_digest,
)

_FAMILIES = {
    OCI_MANIFEST: (OCI_CONFIG, OCI_LAYER_GZIP),
    DOCKER_MANIFEST: (DOCKER_CONFIG, DOCKER_LAYER_GZIP),
}


@dataclass(frozen=True)
class PlatformImage:
    """One platform's assembled image: what to upload (the new ``layers``' blobs, ``config``, ``manifest``; the
    base's layers are already where the base is) and the index entry it makes."""

    platform: str  # "linux/arm64": os/architecture[/variant] of the config (arm64's default v8 left out)
    config: bytes
    config_digest: str
    manifest: bytes
    manifest_digest: str
    media_type: str
    layers: tuple[Layer, ...]
    base_layers: tuple[Mapping[str, Any], ...]  # the base manifest's layer descriptors, as it lists them

    def platform_json(self) -> dict[str, Any]:
        config = json.loads(self.config)
        return {
            key: config[key]
            for key in ("architecture", "os", "os.version", "os.features", "variant")
            if config.get(key)
        }


def _base_documents(base_manifest: bytes, base_config: bytes) -> tuple[dict[str, Any], dict[str, Any], str]:
    manifest: dict[str, Any] = json.loads(base_manifest)
    media_type = manifest.get("mediaType") or (OCI_MANIFEST if "config" in manifest else "")
    if media_type not in _FAMILIES:
        raise BuildError(
            f"the base manifest is {media_type or 'of no known type'}, not a single-platform image manifest",
            fix="pass the manifest of one platform (resolve an index first)",
        )
    if manifest["config"]["digest"] != sha256_digest(base_config):
        raise BuildError(
            f"the base config given ({sha256_digest(base_config)}) is not the one the base manifest names "
            f"({manifest['config']['digest']})",
            fix="read the config blob the manifest names",
        )
    config: dict[str, Any] = json.loads(base_config)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(manifest.get("layers") or []):
        raise BuildError(
            f"the base lists {len(manifest.get('layers') or [])} layers but {len(diff_ids)} diff_ids"
        )
    return manifest, config, media_type


def image_documents(
    base_manifest: bytes,
    base_config: bytes,
    recipe: Recipe,
    layers: Sequence[Layer],
    *,
    epoch: int,
    annotations: Mapping[str, str] | None = None,
) -> PlatformImage:
    """The config and manifest of ``recipe`` carried out on the base (its manifest and config, as bytes), with
    ``layers`` (build_layers') appended. ``annotations`` go on an OCI manifest (a Docker v2 one has none)."""
    manifest, config, media_type = _base_documents(base_manifest, base_config)
    config_type, layer_type = _FAMILIES[media_type]
    new_config = canonical_json(
        image_config(config, recipe, [layer.diff_id for layer in layers], epoch=epoch)
    )
    base_layers = tuple(manifest.get("layers") or [])
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha256_digest(new_config), "size": len(new_config)},
        "layers": [
            *base_layers,
            *({"mediaType": layer_type, "digest": layer.digest, "size": layer.size} for layer in layers),
        ],
    }
    if annotations and media_type == OCI_MANIFEST:
        document["annotations"] = dict(annotations)
    body = canonical_json(document)
    platform = join_platform(json.loads(new_config))
    return PlatformImage(
        platform=platform,
        config=new_config,
        config_digest=sha256_digest(new_config),
        manifest=body,
        manifest_digest=sha256_digest(body),
        media_type=media_type,
        layers=tuple(layers),
        base_layers=base_layers,
    )


def image_index(
    images: Sequence[PlatformImage], *, annotations: Mapping[str, str] | None = None
) -> tuple[bytes, str]:
    """An OCI image index over ``images`` (in the order given; one per platform): its bytes and digest."""
    platforms = [image.platform for image in images]
    if len(set(platforms)) != len(platforms):
        raise BuildError(f"an index lists each platform once; got {platforms}")
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.manifest_digest,
                "size": len(image.manifest),
                "platform": image.platform_json(),
            }
            for image in images
        ],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    body = canonical_json(document)
    return body, sha256_digest(body)


def assemble_platform(
    dockerfile: Dockerfile,
    context: Path,
    *,
    build_args: Mapping[str, str],
    base_manifest: bytes,
    base_config: bytes,
    epoch: int,
    directory: Path,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    dockerfile_name: str = "Dockerfile",
) -> PlatformImage:
    """One platform's image: ``dockerfile`` carried out on the base (its manifest and config bytes for that
    platform) with ``build_args`` and the tool's ``labels``, new layers written into ``directory``.

    Raises NotAssemblable when the engine must build it after all, DockerfileError when the Dockerfile is wrong.
    """
    recipe = evaluate(dockerfile, json.loads(base_config), build_args, labels=labels)
    layers = build_layers(
        dockerfile, context, recipe.copies, epoch=epoch, directory=directory, dockerfile_name=dockerfile_name
    )
    return image_documents(base_manifest, base_config, recipe, layers, epoch=epoch, annotations=annotations)
