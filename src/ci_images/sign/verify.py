"""Verify one digest against one public key, as `cosign verify --key` does for the legacy ``.sig`` tag.

cosign accepts a digest when some layer of its ``.sig`` image verifies with the key and its payload names that
digest (pkg/cosign/verifiers.go ``SimpleClaimVerifier``). We ask the same, and also that the payload names the
repository the image lives in, and when nothing verifies we say why, one distinct problem per cause:

- ``missing``: no ``.sig`` tag, or no signature layer in it;
- ``payload-edited``: the payload is not a cosign payload, names another digest or repository, or (for a layer
  that says this key made it) is not the bytes this key signs for the digest;
- ``signature-edited``: the signature is not an ECDSA signature at all, or the layer says this key made it and it
  does not verify;
- ``wrong-key``: signatures exist, none by this key.

Which of the last three applies is a diagnosis from what the layer says about itself (our ``signer`` annotation):
a forger can make it say anything, but never make verification pass.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ci_images.oci import short_digest
from ci_images.registry.client import RegistryClient
from ci_images.sign import keys
from ci_images.sign import payload as documents
from ci_images.sign.payload import Layer
from ci_images.sign.store import Signatures, read_payload, read_signatures

MISSING, PAYLOAD_EDITED, SIGNATURE_EDITED, WRONG_KEY = (
    "missing",
    "payload-edited",
    "signature-edited",
    "wrong-key",
)


@dataclass(frozen=True)
class Verdict:
    digest: str
    problem: str | None  # None: verified
    message: str
    signer: str | None = None  # the fingerprint that verified

    @property
    def ok(self) -> bool:
        return self.problem is None


def _signature_bytes(layer: Layer) -> bytes | None:
    """The DER signature of a layer, or None when the annotation is not base64 of an ECDSA signature."""
    try:
        der = base64.b64decode(layer.signature, validate=True)
        decode_dss_signature(der)
    except (binascii.Error, ValueError):
        return None
    return der if der else None


def _diagnose(
    layer: Layer, body: bytes, expected: bytes, reference: str, digest: str, ours: str
) -> tuple[str, str]:
    """Why ``layer`` (whose signature does not verify with our key) is not a good signature of ``digest``."""
    claim = documents.read_claim(body)
    short = short_digest(ours)
    if claim is None or claim.type != documents.PAYLOAD_TYPE:
        return PAYLOAD_EDITED, f"payload edited: layer {layer.digest[:19]} is not a cosign signature payload"
    if claim.digest != digest:
        return PAYLOAD_EDITED, f"payload edited: it names {claim.digest}, not {digest}"
    if claim.reference != reference:
        return PAYLOAD_EDITED, f"payload edited: it names repository {claim.reference}, not {reference}"
    if _signature_bytes(layer) is None:
        return SIGNATURE_EDITED, "signature edited: the annotation is not a base64 DER ECDSA signature"
    if layer.signer == ours:
        if body != expected:
            return (
                PAYLOAD_EDITED,
                f"payload edited: its bytes are not what key {short} signed for this digest",
            )
        return (
            SIGNATURE_EDITED,
            f"signature edited: the layer says key {short} made it, but it does not verify",
        )
    other = short_digest(layer.signer, empty="another key")
    return WRONG_KEY, f"wrong key: signed by {other}, and no signature verifies with key {short}"


_RANK = {PAYLOAD_EDITED: 0, SIGNATURE_EDITED: 1, WRONG_KEY: 2}


def verify_digest(
    client: RegistryClient,
    repository_path: str,
    reference: str,
    digest: str,
    public_key: ec.EllipticCurvePublicKey,
    *,
    found: Signatures | None = None,
) -> Verdict:
    """Does ``reference@digest`` carry a signature by ``public_key`` whose payload names exactly that?"""
    ours = keys.fingerprint(public_key)
    signatures = found if found is not None else read_signatures(client, repository_path, digest)
    layers = signatures.simplesigning()
    if not layers:
        where = f"{reference}:{signatures.tag}"
        return Verdict(
            digest,
            MISSING,
            f"missing: no signature for {digest} ({where} "
            + ("holds no signature layer)" if signatures.exists else "does not exist)"),
        )
    expected = documents.payload(reference, digest)
    problems: list[tuple[int, bool, str, str]] = []
    for layer in layers:
        body = read_payload(client, repository_path, layer)
        der = _signature_bytes(layer)
        if der is not None and keys.verify_bytes(public_key, body, der):
            claim = documents.read_claim(body)
            if claim is not None and claim.type == documents.PAYLOAD_TYPE and claim.digest == digest:
                if claim.reference == reference:
                    return Verdict(digest, None, f"verified with key {short_digest(ours)}", ours)
                problems.append(
                    (0, True, PAYLOAD_EDITED, f"signed for repository {claim.reference}, not {reference}")
                )
                continue
            problems.append(
                (
                    0,
                    True,
                    PAYLOAD_EDITED,
                    f"a signature by this key names {claim.digest if claim else 'nothing'}, not {digest}",
                )
            )
            continue
        problem, message = _diagnose(layer, body, expected, reference, digest, ours)
        problems.append((_RANK[problem], layer.signer == ours, problem, message))
    # A layer that says it is ours explains the failure best; then the most specific cause.
    problems.sort(key=lambda p: (not p[1], p[0]))
    _, _, problem, message = problems[0]
    return Verdict(digest, problem, message)
