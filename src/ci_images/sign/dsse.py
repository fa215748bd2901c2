"""DSSE envelopes (secure-systems-lab/dsse v1.0): the pre-authentication encoding, signing and verifying. Pure.

- PAE: ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, LEN the ASCII decimal byte length with no leading
  zeros (dsse protocol.md; go-securesystemslib dsse/envelope.go ``PAE``). The signature is over these bytes: for a
  cosign key, ASN.1 DER ECDSA P-256 over their SHA-256, as for ``.sig`` payloads (``keys.sign_bytes``).
- Envelope JSON as cosign v3 writes it into an ``.att`` layer: ``json.Marshal`` of sigstore/protobuf-specs
  ``gen/pb-go/dsse`` ``Envelope`` (cosign cmd/cosign/cli/signcommon/common.go ``ExtractComponentsFromProtoBundle``):
  ``{"payload":B64,"payloadType":T,"signatures":[{"sig":B64}]}``, Go's standard base64 for []byte, ``keyid`` left
  out when empty (``omitempty``).
- ``keyid`` stays empty on purpose: go-securesystemslib dsse/verify.go skips a signature whose keyid differs from the
  verifier's, and cosign's verifier computes an SSH-style ``SHA256:`` fingerprint there, not ours. Who signed is
  recorded beside the envelope instead (the ``.att`` layer's signer annotation, as for ``.sig``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ci_images.oci import go_json
from ci_images.sign import keys

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"  # cosign pkg/types/payload.go IntotoPayloadType
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"  # cosign pkg/types/payload.go DssePayloadType


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the bytes a DSSE signature signs."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    body: bytes  # the serialized statement (base64 in JSON)
    signatures: tuple[bytes, ...]  # DER signatures, in envelope order

    def to_json(self) -> bytes:
        return go_json(
            {
                "payload": base64.b64encode(self.body).decode("ascii"),
                "payloadType": self.payload_type,
                "signatures": [{"sig": base64.b64encode(sig).decode("ascii")} for sig in self.signatures],
            }
        )


def sign(key: keys.SigningKey, body: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> Envelope:
    return Envelope(payload_type, body, (key.sign(pae(payload_type, body)),))


def parse(data: bytes) -> Envelope | None:
    """The envelope in ``data``, or None when it is not a DSSE JSON envelope (signatures that are not base64 are
    dropped: they verify with no key)."""
    try:
        document = json.loads(data)
        body = base64.b64decode(document["payload"], validate=True)
        payload_type = document["payloadType"]
        entries = document.get("signatures") or []
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(payload_type, str) or not isinstance(entries, list):
        return None
    signatures: list[bytes] = []
    for entry in entries:
        try:
            signatures.append(base64.b64decode(entry["sig"], validate=True))
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue
    return Envelope(payload_type, body, tuple(signatures))


def is_ecdsa_signature(signature: bytes) -> bool:
    try:
        decode_dss_signature(signature)
    except ValueError:
        return False
    return True


def verify(public_key: ec.EllipticCurvePublicKey, envelope: Envelope) -> bool:
    """True when some signature of ``envelope`` verifies with ``public_key`` over its PAE."""
    message = pae(envelope.payload_type, envelope.body)
    return any(
        is_ecdsa_signature(sig) and keys.verify_bytes(public_key, message, sig) for sig in envelope.signatures
    )
