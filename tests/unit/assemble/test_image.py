"""ci_images.assemble.image: golden documents of the shipped Dockerfiles on a synthetic base, byte for byte."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ci_images.assemble.dockerfile import read_dockerfile
from ci_images.assemble.image import PlatformImage, assemble_platform, image_index
from ci_images.assemble.layers import Layer
from ci_images.errors import BuildError
from ci_images.oci import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    canonical_json,
    sha256_digest,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
UPDATE_ENV = "UPDATE_GOLDEN"
EPOCH = 1_714_564_800  # 2024-05-01T12:00:00Z
LABELS = {"org.opencontainers.image.version": "3.11.7", "org.opencontainers.image.revision": "0" * 40}
BASE_LAYER = {"mediaType": DOCKER_LAYER_GZIP, "digest": "sha256:" + "b" * 64, "size": 1234}


def base_documents(platform: str, *, oci: bool) -> tuple[bytes, bytes]:
    """A synthetic base for ``platform`` (os/arch[/variant]): config bytes, and a manifest naming them."""
    os_name, arch, *variant = platform.split("/")
    config: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        **({"variant": variant[0]} if variant else {}),
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PORT=8080"],
            "Entrypoint": ["docker-entrypoint.sh"],
            "Cmd": ["server", "-dev"],
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.opencontainers.image.title": "base"},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar / # buildkit"}],
    }
    config_bytes = canonical_json(config)
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    config_type = (
        "application/vnd.oci.image.config.v1+json"
        if oci
        else "application/vnd.docker.container.image.v1+json"
    )
    layer = {**BASE_LAYER, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"} if oci else BASE_LAYER
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": config_type,
            "digest": sha256_digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [layer],
    }
    return json.dumps(
        manifest, indent=3
    ).encode(), config_bytes  # a base's own formatting is kept out of ours


def assemble(
    name: str, build_args: dict[str, str], platform: str, tmp_path: Path, *, oci: bool
) -> PlatformImage:
    context = tmp_path / "context" / name
    if not context.exists():
        shutil.copytree(REPO_ROOT / "images" / name, context)
    manifest, config = base_documents(platform, oci=oci)
    return assemble_platform(
        read_dockerfile(context / "Dockerfile", display=f"images/{name}/Dockerfile"),
        context,
        build_args={"BASE_IMAGE": "upstream.example/base@sha256:" + "c" * 64, **build_args},
        base_manifest=manifest,
        base_config=config,
        epoch=EPOCH,
        directory=tmp_path / "layers",
        labels=LABELS,
    )


CASES = {
    "local-kms": ("local-kms", {}, False),
    "local-kms-seeded": ("local-kms", {"KMS_SEED": "sops-test"}, False),
    "vault": ("vault", {}, True),
}


def listing(layer: Layer) -> list[str]:
    """``mode uid:gid path`` per entry: what a reviewer of the golden file reads."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        return [f"{m.mode:04o} {m.uid}:{m.gid} {m.name}{'/' if m.isdir() else ''}" for m in tar]


def golden_document(images: list[PlatformImage]) -> dict[str, Any]:
    index, index_digest = image_index(images, annotations={"org.opencontainers.image.version": "3.11.7"})
    return {
        "index_digest": index_digest,
        "index": json.loads(index),
        "platforms": {
            image.platform: {
                "manifest_digest": image.manifest_digest,
                "manifest": json.loads(image.manifest),
                "config_digest": image.config_digest,
                "config": json.loads(image.config),
                "layers": [
                    {
                        "diff_id": layer.diff_id,
                        "digest": layer.digest,
                        "size": layer.size,
                        "entries": listing(layer),
                    }
                    for layer in image.layers
                ],
            }
            for image in images
        },
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_shipped_dockerfiles_match_golden_documents(case: str, tmp_path: Path) -> None:
    name, build_args, oci = CASES[case]
    images = [assemble(name, build_args, p, tmp_path, oci=oci) for p in ("linux/amd64", "linux/arm64/v8")]
    document = golden_document(images)
    golden = GOLDEN / f"{case}.json"
    if (
        os.environ.get(UPDATE_ENV) == "1"
    ):  # an intended change: rewrite the golden file, then compare as usual
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(golden.read_text(encoding="utf-8"))
    assert document == expected, (
        f"the assembled documents changed; if intended, run: {UPDATE_ENV}=1 pytest {__file__}"
    )
    # what the golden file shows is what the bytes say
    for image in images:
        assert sha256_digest(image.manifest) == image.manifest_digest
        assert json.loads(image.manifest)["config"]["digest"] == sha256_digest(image.config)


def test_the_manifest_stays_in_the_base_s_family_and_keeps_the_base_layers(tmp_path: Path) -> None:
    docker = assemble("local-kms", {}, "linux/amd64", tmp_path, oci=False)
    oci = assemble("local-kms", {}, "linux/amd64", tmp_path, oci=True)
    for image, family, layer_type in (
        (docker, DOCKER_MANIFEST, DOCKER_LAYER_GZIP),
        (oci, OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip"),
    ):
        manifest = json.loads(image.manifest)
        assert (image.media_type, manifest["mediaType"]) == (family, family)
        assert (
            manifest["layers"][0]
            == json.loads(base_documents("linux/amd64", oci=family == OCI_MANIFEST)[0])["layers"][0]
        )
        assert manifest["layers"][1]["mediaType"] == layer_type
    assert docker.layers == oci.layers  # the same layer bytes under either name


def test_same_inputs_same_bytes_and_an_index_over_platforms(tmp_path: Path) -> None:
    first = assemble("vault", {}, "linux/arm64/v8", tmp_path / "one", oci=True)
    second = assemble("vault", {}, "linux/arm64/v8", tmp_path / "two", oci=True)
    assert (first.manifest, first.config) == (second.manifest, second.config)
    assert first.platform == "linux/arm64"
    body, digest = image_index([first])
    index = json.loads(body)
    assert (index["mediaType"], digest) == (OCI_INDEX, sha256_digest(body))
    assert index["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    with pytest.raises(BuildError, match="each platform once"):
        image_index([first, second])


def test_a_config_that_is_not_the_manifest_s_is_refused(tmp_path: Path) -> None:
    manifest, _ = base_documents("linux/amd64", oci=False)
    _, other_config = base_documents("linux/arm64", oci=False)
    context = REPO_ROOT / "images" / "vault"
    with pytest.raises(BuildError, match="is not the one the base manifest names"):
        assemble_platform(
            read_dockerfile(context / "Dockerfile"),
            context,
            build_args={"BASE_IMAGE": "b"},
            base_manifest=manifest,
            base_config=other_config,
            epoch=EPOCH,
            directory=tmp_path,
        )
