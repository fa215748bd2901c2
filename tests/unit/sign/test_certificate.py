"""What a Fulcio certificate says (real certificates from cosign's and sigstore-go's test data). Pure."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ci_images.errors import SigningError
from ci_images.sign import keyless
from ci_images.sign.certificate import _der_utf8, bundle_certificate, read_certificate

FIXTURES = Path(__file__).parent / "fixtures" / "sigstore"
SIGSTORE_JS = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _bundle(name: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(_fixture(name))
    return document


def test_a_github_actions_certificate_names_workflow_repository_and_ref() -> None:
    """sigstore-go examples/bundle-provenance.json: a v0.1 bundle, certificate in x509CertificateChain."""
    cert = bundle_certificate(_bundle("sigstore-go-bundle-provenance.json"))
    assert cert is not None
    assert cert.identity == SIGSTORE_JS
    assert cert.issuer == keyless.GITHUB_ISSUER
    assert cert.workflow_repository == "sigstore/sigstore-js"
    assert cert.workflow_ref == "refs/heads/main"
    assert cert.workflow_trigger == "push" and cert.workflow_name == "Release"
    assert cert.build_signer_uri == SIGSTORE_JS


def test_a_v0_3_bundle_carries_its_certificate_directly() -> None:
    """cosign pkg/cosign/testdata/oci-attestation.sigstore.json: verificationMaterial.certificate, e-mail SAN."""
    cert = bundle_certificate(_bundle("cosign-oci-attestation.sigstore.json"))
    assert cert is not None
    assert cert.identity == "cody@soyland.com"
    assert cert.issuer == "https://github.com/login/oauth"
    assert cert.workflow_repository is None


def test_pem_and_der_read_alike_and_garbage_is_a_signing_error() -> None:
    from cryptography import x509

    bundle = _bundle("sigstore-go-bundle-provenance.json")
    raw = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"]  # type: ignore[index]
    der = base64.b64decode(raw)
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    assert read_certificate(pem) == read_certificate(der)
    with pytest.raises(SigningError, match=r"not an X\.509 certificate") as caught:
        read_certificate(b"not a certificate")
    assert caught.value.exit_code == 9


def test_a_bundle_signed_with_a_key_names_no_identity() -> None:
    assert bundle_certificate({"verificationMaterial": {"publicKey": {"hint": "x"}}}) is None
    assert bundle_certificate({}) is None
    with pytest.raises(SigningError, match="not base64"):
        bundle_certificate({"verificationMaterial": {"certificate": {"rawBytes": "***"}}})


def test_der_utf8_strings_short_and_long() -> None:
    assert _der_utf8(b"\x0c\x04push") == "push"
    long_text = "x" * 200
    assert _der_utf8(b"\x0c\x81\xc8" + long_text.encode()) == long_text
    assert _der_utf8(b"\x13\x04push") is None  # PrintableString, not UTF8String
    assert _der_utf8(b"\x0c\x05push") is None  # length beyond the value
