"""DSSE envelopes: the PAE, cosign's envelope JSON, and a signature openssl verifies over the PAE."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from ci_images.sign import attest, dsse, keys
from ci_images.sign import statement as statements
from tests.unit.sign.attestation_inputs import DIGEST, REPOSITORY


def test_pae_is_dsse_v1s() -> None:
    """The vector of secure-systems-lab/dsse protocol.md."""
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert dsse.pae("t", b"") == b"DSSEv1 1 t 0 "
    assert dsse.pae("\u00e9", b"x") == b"DSSEv1 2 \xc3\xa9 1 x"  # byte lengths, not characters


def test_envelope_json_is_cosigns_and_has_no_keyid(ours: keys.SigningKey) -> None:
    envelope = dsse.sign(ours, b'{"a":1}')
    document = json.loads(envelope.to_json())
    assert list(document) == ["payload", "payloadType", "signatures"]
    assert document["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(document["payload"]) == b'{"a":1}'
    assert [list(s) for s in document["signatures"]] == [["sig"]]
    assert b" " not in envelope.to_json()
    assert dsse.parse(envelope.to_json()) == envelope


def test_envelope_verifies_with_its_key_only(ours: keys.SigningKey, theirs: keys.SigningKey) -> None:
    envelope = dsse.sign(ours, b"statement")
    assert dsse.verify(ours.public, envelope)
    assert not dsse.verify(theirs.public, envelope)
    assert not dsse.verify(
        ours.public, dsse.Envelope(envelope.payload_type, b"statemenT", envelope.signatures)
    )
    assert not dsse.verify(ours.public, dsse.Envelope("text/plain", envelope.body, envelope.signatures))
    assert not dsse.verify(ours.public, dsse.Envelope(envelope.payload_type, envelope.body, (b"junk",)))


@pytest.mark.parametrize("data", [b"", b"[]", b'{"payload":"!!","payloadType":"x"}', b'{"payloadType":"x"}'])
def test_what_is_no_envelope(data: bytes) -> None:
    assert dsse.parse(data) is None


def test_openssl_verifies_the_signature_over_the_pae(ours: keys.SigningKey, tmp_path: Path) -> None:
    """Independent of our verifier: `openssl dgst -sha256 -verify` over the PAE bytes."""
    body = attest.statement_bytes(REPOSITORY, DIGEST, statements.SPDX_DOCUMENT, {"spdxVersion": "SPDX-2.3"})
    document = json.loads(dsse.sign(ours, body).to_json())
    payload = base64.b64decode(document["payload"])
    kind = document["payloadType"].encode()
    (tmp_path / "pae.bin").write_bytes(b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload))
    (tmp_path / "sig.der").write_bytes(base64.b64decode(document["signatures"][0]["sig"]))
    (tmp_path / "pub.pem").write_bytes(keys.public_key_pem(ours.public))

    def openssl_verify() -> subprocess.CompletedProcess[str]:
        argv = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "pae.bin"]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)

    verified = openssl_verify()
    assert verified.returncode == 0 and "Verified OK" in verified.stdout
    (tmp_path / "pae.bin").write_bytes((tmp_path / "pae.bin").read_bytes().replace(b"SPDX-2.3", b"SPDX-2.4"))
    assert openssl_verify().returncode != 0
