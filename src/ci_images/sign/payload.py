"""cosign's signature documents, byte for byte: the simplesigning payload and the ``.sig`` image. Pure.

- Payload: sigstore/sigstore pkg/signature/payload/payload.go, ``Cosign.MarshalJSON`` of
  ``SimpleContainerImage{critical{identity{docker-reference}, image{docker-manifest-digest}, type}, optional}``,
  Go's json.Marshal (struct order, no spaces; ``optional`` is null without annotations). docker-reference is the
  repository alone (``Repository.Name()`` of go-containerregistry: registry + "/" + path).
- Tag: ``sha256-<hex>.sig`` in the image's own repository (cosign pkg/oci/remote/remote.go ``SignatureTag``, suffix
  ``sig`` from options.go).
- Image: cosign pkg/oci/empty/empty.go: go-containerregistry's ``empty.Image`` with an OCI manifest media type and
  config media type ``application/vnd.oci.image.config.v1+json``; pkg/oci/mutate/signatures.go ``AppendSignatures``
  appends one layer per signature through ``mutate.Append``, which adds one (empty) history entry and one
  ``rootfs.diff_ids`` entry per layer to the config (go-containerregistry pkg/v1/mutate/image.go ``compute``). The
  layer is the payload itself, uncompressed, media type ``application/vnd.dev.cosign.simplesigning.v1+json``, with
  annotation ``dev.cosignproject.cosign/signature`` = base64 of the DER signature (pkg/oci/static/signature.go).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ci_images.catalog.refs import DOCKER_HUB_ALIASES, Repository
from ci_images.oci import OCI_CONFIG, OCI_MANIFEST, digest_tag, go_json, sha256_digest

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# Ours, beside cosign's (cosign ignores annotations it does not know, and its duplicate check only compares the
# new signature's annotations with an old one's): the fingerprint of the key that made the signature, so that
# verification can tell "this signature was edited" from "another key signed this".
SIGNER_ANNOTATION = "io.github.ci-images.signer"
PAYLOAD_TYPE = "cosign container image signature"
# Go's zero time.Time as encoding/json writes it: v1.Time has no MarshalJSON of its own and `omitempty` does not
# drop structs, so every config cosign writes without --record-creation-timestamp carries it.
ZERO_TIME = "0001-01-01T00:00:00Z"


def docker_reference(repository: Repository) -> str:
    # go-containerregistry's name package stores Docker Hub as index.docker.io (pkg/name/registry.go).
    host = "index.docker.io" if repository.host in DOCKER_HUB_ALIASES else repository.host
    return f"{host}/{repository.path}"


def payload(reference: str, digest: str, optional: Mapping[str, Any] | None = None) -> bytes:
    """The bytes cosign signs for ``reference@digest``."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": PAYLOAD_TYPE,
            },
            # Go marshals a map with its keys sorted.
            "optional": dict(sorted(optional.items())) if optional else None,
        }
    )


@dataclass(frozen=True)
class Claim:
    """What a payload says it signs."""

    reference: str
    digest: str
    type: str


def read_claim(data: bytes) -> Claim | None:
    """The claim of a payload, or None when it is not a simplesigning payload at all."""
    try:
        document = json.loads(data)
        critical = document["critical"]
        return Claim(
            reference=str(critical["identity"]["docker-reference"]),
            digest=str(critical["image"]["docker-manifest-digest"]),
            type=str(critical["type"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def signature_tag(digest: str) -> str:
    return digest_tag(digest, "sig")


@dataclass(frozen=True)
class Layer:
    """One signature layer of a ``.sig`` manifest, as its descriptor says."""

    digest: str
    size: int
    media_type: str = SIMPLESIGNING
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        return self.annotations.get(SIGNATURE_ANNOTATION, "")

    @property
    def signer(self) -> str | None:
        return self.annotations.get(SIGNER_ANNOTATION)

    def descriptor(self) -> dict[str, Any]:
        # go-containerregistry v1.Descriptor field order: mediaType, size, digest, ..., annotations.
        result: dict[str, Any] = {"mediaType": self.media_type, "size": self.size, "digest": self.digest}
        if self.annotations:
            result["annotations"] = dict(sorted(self.annotations.items()))
        return result


def new_layer(payload_bytes: bytes, signature_b64: str, *, signer: str | None = None) -> Layer:
    annotations = {SIGNATURE_ANNOTATION: signature_b64}
    if signer:
        annotations[SIGNER_ANNOTATION] = signer
    return Layer(sha256_digest(payload_bytes), len(payload_bytes), SIMPLESIGNING, annotations)


def read_layers(manifest: Mapping[str, Any]) -> list[Layer]:
    return [
        Layer(
            digest=str(layer.get("digest", "")),
            size=int(layer.get("size", 0)),
            media_type=str(layer.get("mediaType", "")),
            annotations={str(k): str(v) for k, v in (layer.get("annotations") or {}).items()},
        )
        for layer in manifest.get("layers") or []
    ]


def empty_config() -> dict[str, Any]:
    """go-containerregistry's empty.Image config, as v1.ConfigFile marshals it (field order of the struct)."""
    return {
        "architecture": "",
        "created": ZERO_TIME,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {},
    }


def append_to_config(config: Mapping[str, Any], layer: Layer) -> dict[str, Any]:
    """``mutate.Append`` of one layer: one more history entry and diff_id (an uncompressed layer: diff_id = digest).

    An existing config (maybe written by cosign) keeps its fields and their order; ``history`` goes where
    v1.ConfigFile puts it, after ``created``.
    """
    history = [*(config.get("history") or []), {"created": ZERO_TIME}]
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), layer.digest]
    result: dict[str, Any] = {}
    for key, value in config.items():
        if key == "history":
            continue
        result[key] = rootfs if key == "rootfs" else value
        if key == "created":
            result["history"] = history
    result.setdefault("history", history)
    result.setdefault("rootfs", rootfs)
    return result


def signature_manifest(
    config: bytes, layers: Sequence[Layer], base: Mapping[str, Any] | None = None
) -> bytes:
    """The ``.sig`` image manifest over ``config`` and ``layers`` (v1.Manifest field order); ``base`` keeps the
    fields of an existing manifest (its annotations, say)."""
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    for key, value in (base or {}).items():
        document.setdefault(key, value)
    document["config"] = {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)}
    document["layers"] = [layer.descriptor() for layer in layers]
    return go_json(document)
