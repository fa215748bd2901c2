"""Who signed keylessly, as the Fulcio certificate itself says: its subject alternative name and the GitHub Actions
extensions cosign checks. Pure: bytes in, a frozen record out.

cosign v3 in bundle mode prints no identity after `cosign verify` (cmd/cosign/cli/verify/verify.go,
``transformOutput``, replaces each verified bundle by a payload without the certificate), so the identity a lock file
records is read here from the certificate: the one in the Sigstore bundle the registry holds (``sign/bundles.py``).

Sources followed: sigstore/cosign v3.0.6 ``pkg/cosign/certextensions.go`` (the ``--certificate-github-workflow-*``
flags compare the deprecated extensions 1.3.6.1.4.1.57264.1.2-6, whose value is the raw string) and
sigstore/fulcio ``docs/oid-info.md`` (1.3.6.1.4.1.57264.1.8 onwards: a DER UTF8String); the subject as cosign prints
it is the first name of sigstore/sigstore ``pkg/cryptoutils.GetSubjectAlternateNames`` (DNS names, e-mail
addresses, IP addresses, then URIs).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ci_images.errors import SigningError

_FULCIO = "1.3.6.1.4.1.57264.1."
# Deprecated extensions: the value is the string itself (cosign reads exactly these for its GitHub flags).
ISSUER_V1 = _FULCIO + "1"
WORKFLOW_TRIGGER = _FULCIO + "2"
WORKFLOW_SHA = _FULCIO + "3"
WORKFLOW_NAME = _FULCIO + "4"
WORKFLOW_REPOSITORY = _FULCIO + "5"
WORKFLOW_REF = _FULCIO + "6"
# Current extensions: the value is a DER UTF8String.
ISSUER_V2 = _FULCIO + "8"
BUILD_SIGNER_URI = _FULCIO + "9"  # the workflow file that ran the job (a reusable workflow's own file)
SOURCE_REPOSITORY_URI = _FULCIO + "12"
SOURCE_REPOSITORY_REF = _FULCIO + "14"

_UTF8_STRING = 0x0C


@dataclass(frozen=True)
class SignerCertificate:
    """What one signing certificate says about its signer."""

    identity: str  # the SAN cosign matches --certificate-identity against (and prints as optional.Subject)
    issuer: str | None = None
    workflow_repository: str | None = None  # OWNER/NAME of the run: a reusable workflow's caller
    workflow_ref: str | None = None  # the run's git ref, e.g. refs/heads/main
    workflow_sha: str | None = None
    workflow_trigger: str | None = None
    workflow_name: str | None = None
    build_signer_uri: str | None = None


def _der_utf8(value: bytes) -> str | None:
    """A DER UTF8String's text; None when ``value`` is not one."""
    if len(value) < 2 or value[0] != _UTF8_STRING:
        return None
    length, start = value[1], 2
    if length & 0x80:
        width = length & 0x7F
        if width == 0 or len(value) < 2 + width:
            return None
        length, start = int.from_bytes(value[2 : 2 + width], "big"), 2 + width
    if start + length != len(value):
        return None
    try:
        return value[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _extensions(cert: x509.Certificate) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for extension in cert.extensions:
        dotted = extension.oid.dotted_string
        if dotted.startswith(_FULCIO) and isinstance(extension.value, x509.UnrecognizedExtension):
            found[dotted] = extension.value.value
    return found


def _subject(cert: x509.Certificate) -> str | None:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ordered = [
        *names.get_values_for_type(x509.DNSName),
        *names.get_values_for_type(x509.RFC822Name),
        *(str(ip) for ip in names.get_values_for_type(x509.IPAddress)),
        *names.get_values_for_type(x509.UniformResourceIdentifier),
    ]
    return ordered[0] if ordered else None


def read_certificate(data: bytes, *, where: str = "certificate") -> SignerCertificate:
    """The signer a certificate names, from its DER or PEM bytes. SigningError (exit 9) when it is not one."""
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if data.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(data)
        )
    except ValueError as exc:
        raise SigningError(f"{where} is not an X.509 certificate: {exc}") from exc
    subject = _subject(cert)
    if not subject:
        raise SigningError(f"{where} names no subject alternative name: not a Fulcio signing certificate")
    raw = _extensions(cert)

    def plain(oid: str) -> str | None:
        value = raw.get(oid)
        return value.decode("utf-8", "replace") if value else None

    def der(oid: str) -> str | None:
        value = raw.get(oid)
        return _der_utf8(value) if value else None

    return SignerCertificate(
        identity=subject,
        issuer=der(ISSUER_V2) or plain(ISSUER_V1),
        workflow_repository=plain(WORKFLOW_REPOSITORY),
        workflow_ref=plain(WORKFLOW_REF) or der(SOURCE_REPOSITORY_REF),
        workflow_sha=plain(WORKFLOW_SHA),
        workflow_trigger=plain(WORKFLOW_TRIGGER),
        workflow_name=plain(WORKFLOW_NAME),
        build_signer_uri=der(BUILD_SIGNER_URI),
    )


def bundle_certificate(bundle: Mapping[str, Any], *, where: str = "bundle") -> SignerCertificate | None:
    """The signing certificate of a Sigstore bundle (protobuf-specs ``Bundle`` as JSON): v0.3 carries it under
    ``verificationMaterial.certificate``, v0.1 and v0.2 as the first of ``x509CertificateChain.certificates``. None
    for a bundle signed with a key (``publicKey``): it names no identity."""
    material = bundle.get("verificationMaterial")
    if not isinstance(material, Mapping):
        return None
    leaf = material.get("certificate")
    if not isinstance(leaf, Mapping):
        chain = material.get("x509CertificateChain")
        certificates = chain.get("certificates") if isinstance(chain, Mapping) else None
        leaf = certificates[0] if isinstance(certificates, list) and certificates else None
    raw = leaf.get("rawBytes") if isinstance(leaf, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        der = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise SigningError(f"{where}: its certificate is not base64: {exc}") from exc
    return read_certificate(der, where=f"{where}'s certificate")
