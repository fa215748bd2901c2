"""The ``sha256-<hex>.sig`` tags, read and written through the one registry client.

Writing follows cosign's ``WriteSignatures`` after ``AttachSignatureToEntity``: read what the tag holds, append the
new layer (never one that is already there), upload the payload and the new config, then PUT the manifest under
the tag again. Only ``.sig`` tags are written here: image tags are the publisher's alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ci_images.errors import RegistryError
from ci_images.oci import OCI_MANIFEST, go_json, sha256_digest
from ci_images.registry.client import RegistryClient
from ci_images.sign import payload as documents
from ci_images.sign.payload import Layer


@dataclass(frozen=True)
class Signatures:
    """What a ``.sig`` tag holds: the manifest and config as read (None when the tag is absent) and the layers."""

    tag: str
    manifest_digest: str | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    layers: tuple[Layer, ...] = ()

    @property
    def exists(self) -> bool:
        return self.manifest_digest is not None

    def simplesigning(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.media_type == documents.SIMPLESIGNING)


def read_signatures(
    client: RegistryClient, repo: str, digest: str, *, with_config: bool = False, tag: str | None = None
) -> Signatures:
    """What ``digest``'s ``.sig`` tag holds (or ``tag``'s: ``.att`` has the same layout)."""
    tag = tag or documents.signature_tag(digest)
    got = client.get_manifest(repo, tag)
    if got is None:
        return Signatures(tag)
    info, body = got
    try:
        manifest: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{client.host}/{repo}:{tag} is not JSON ({exc})") from exc
    config: dict[str, Any] = {}
    if with_config and manifest.get("config", {}).get("digest"):
        config = json.loads(client.get_blob(repo, manifest["config"]["digest"]))
    return Signatures(tag, info.digest, manifest, config, tuple(documents.read_layers(manifest)))


def read_payload(client: RegistryClient, repo: str, layer: Layer) -> bytes:
    """The layer's blob (its digest is checked by the client)."""
    return client.get_blob(repo, layer.digest)


def append_signature(
    client: RegistryClient, repo: str, digest: str, payload: bytes, layer: Layer, *, tag: str | None = None
) -> str:
    """Append ``layer`` (its blob is ``payload``) to the ``.sig`` tag of ``digest`` (or to ``tag``); returns the new
    manifest digest.

    The caller has checked that no existing layer is a signature by the same key; an identical layer is never added
    twice either way.
    """
    current = read_signatures(client, repo, digest, with_config=True, tag=tag)
    if any(old.digest == layer.digest and old.signature == layer.signature for old in current.layers):
        assert current.manifest_digest is not None
        return current.manifest_digest
    config_document = documents.append_to_config(current.config or documents.empty_config(), layer)
    config = go_json(config_document)
    client.upload_blob(repo, layer.digest, payload)
    client.upload_blob(repo, sha256_digest(config), config)
    manifest = documents.signature_manifest(config, [*current.layers, layer], base=current.manifest or None)
    return client.put_manifest(repo, current.tag, manifest, OCI_MANIFEST)
