"""Certificates for the loopback registries: a throwaway CA per lab and the server certificates it issues.

Clients and the engine are told to trust the CA's certificate; the registries serve certificates for localhost
and 127.0.0.1 signed by it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ci_images.errors import RegistryError
from ci_images.oci import LOOPBACK


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA made for one lab; its certificate is what clients and the engine are told to trust."""

    cert_path: Path
    key_path: Path

    @classmethod
    def create(cls, directory: Path) -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"ci-images lab CA {secrets.token_hex(4)}")]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(cert_path=directory / "ca.crt", key_path=directory / "ca.key")
        write_private(ca.key_path, _key_pem(key))
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    def issue_server_cert(self, directory: Path) -> tuple[Path, Path]:
        """A server certificate for localhost and 127.0.0.1; returns (cert, key) paths."""
        self.issue(
            directory,
            "server",
            common_name="localhost",
            extensions=[
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
                ),
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            ],
        )
        return directory / "server.crt", directory / "server.key"

    def issue(
        self,
        directory: Path,
        name: str,
        *,
        common_name: str,
        extensions: list[x509.ExtensionType],
        critical: tuple[type[x509.ExtensionType], ...] = (x509.KeyUsage,),
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A leaf certificate signed by this CA (its direct leaf: the CA has path length 0), valid for 30 days, with
        ``extensions`` (those of a ``critical`` type marked so); written as ``NAME.crt`` and ``NAME.key`` (0600) in
        ``directory``. Returns its key and certificate."""
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise RegistryError(
                f"{self.key_path} is not the lab CA's key", fix="recreate the lab (lab-down, lab-up)"
            )
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=isinstance(extension, critical))
        cert = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        ).sign(ca_key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(directory / f"{name}.key", _key_pem(key))
        return key, cert


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (private keys, the htpasswd file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


__all__ = [
    "CertificateAuthority",
    "write_private",
]
