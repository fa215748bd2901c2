"""The Sigstore bundles cosign v3 attaches to a digest, read through the one registry client.

cosign v3 signs into a Sigstore bundle and writes it as an OCI referrer of the digest (sigstore/cosign v3.0.6,
``pkg/oci/remote/write.go``: ``WriteAttestationNewBundleFormat`` and ``WriteReferrer``: a manifest whose config is
``application/vnd.oci.empty.v1+json``, with ``artifactType`` and one layer of media type
``application/vnd.dev.sigstore.bundle.v0.3+json``, and ``subject`` the signed digest). A registry without the
referrers API (GHCR) gets go-containerregistry's fallback: an OCI index under the tag ``sha256-<hex>`` listing those
manifests. Reading follows cosign's ``GetBundles`` (``pkg/cosign/verify.go``) and ``ociremote.Bundle``
(``pkg/oci/remote/signatures.go``): the referrers of the digest, each manifest with exactly one bundle layer.

Nothing here verifies a bundle: `cosign verify` did that under the identity policy. This only reads which
certificate signed, for the lock file, because cosign v3 does not print it.
"""

from __future__ import annotations

import json
from typing import Any

from ci_images.oci import referrers_tag
from ci_images.registry.client import RegistryClient
from ci_images.sign.certificate import SignerCertificate, bundle_certificate
from ci_images.sign.keyless import IdentityPolicy

BUNDLE_MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle"


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _referrers(client: RegistryClient, repo: str, digest: str) -> list[dict[str, Any]]:
    body = client.get_referrers(repo, digest)
    if body is None:
        got = client.get_manifest(repo, referrers_tag(digest))
        if got is None:
            return []
        body = got[1]
    index = _json(body)
    manifests = index.get("manifests") if index else None
    return [m for m in manifests if isinstance(m, dict)] if isinstance(manifests, list) else []


def read_bundles(client: RegistryClient, repo: str, digest: str) -> list[dict[str, Any]]:
    """Every Sigstore bundle attached to ``digest`` in ``repo``, as JSON documents (unverified)."""
    bundles = []
    for referrer in _referrers(client, repo, digest):
        artifact_type = referrer.get("artifactType")
        if isinstance(artifact_type, str) and not artifact_type.startswith(BUNDLE_MEDIA_TYPE_PREFIX):
            continue  # another kind of referrer (an SBOM, an attestation of another tool)
        got = client.get_manifest(repo, str(referrer.get("digest")))
        manifest = _json(got[1]) if got else None
        layers = manifest.get("layers") if manifest else None
        if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
            continue
        if not str(layers[0].get("mediaType", "")).startswith(BUNDLE_MEDIA_TYPE_PREFIX):
            continue
        bundle = _json(client.get_blob(repo, str(layers[0].get("digest"))))
        if bundle is not None:
            bundles.append(bundle)
    return bundles


def signer_certificates(client: RegistryClient, repo: str, digest: str) -> list[SignerCertificate]:
    """The signing certificates of the bundles attached to ``digest`` (bundles signed with a key name none)."""
    found = []
    for number, bundle in enumerate(read_bundles(client, repo, digest)):
        cert = bundle_certificate(bundle, where=f"{client.host}/{repo}: bundle {number + 1} of {digest}")
        if cert is not None:
            found.append(cert)
    return found


def bundle_identity(client: RegistryClient, repo: str, digest: str, policy: IdentityPolicy) -> str | None:
    """The identity of the certificate that ``policy`` accepts among the bundles of ``digest``; when several
    do (the reusable workflow signed at two refs), the first in sorted order. None when no bundle names one."""
    accepted = sorted({c.identity for c in signer_certificates(client, repo, digest) if policy.matches(c)})
    return accepted[0] if accepted else None
