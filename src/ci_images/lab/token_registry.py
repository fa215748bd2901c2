"""A registry behind a token service, as Docker Hub and GHCR are: Debian's docker-registry with ``auth: token``
(``loopback.server.TokenAuth``) on https://127.0.0.1:PORT, and the lab's token service (``tokens.py``) as its realm
on https://localhost:PORT2, another host name with its own port. Both serve certificates of one lab CA, which is
also the registry's ``rootcertbundle``; start_registry installs the CA in certs.d for the registry's host only,
so the engine must trust the realm through the registry's own certs.d entry, as it does for Docker Hub mirrors.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import certifi

from ci_images.errors import LabError
from ci_images.lab.tokens import (
    DEFAULT_LIFETIME_S,
    ISSUER,
    REALM_HOST_NAME,
    SERVICE,
    Account,
    Level,
    Style,
    TokenService,
)
from ci_images.loopback.certs import CertificateAuthority
from ci_images.loopback.server import RegistryServer, TokenAuth, start_registry
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.retry import RetryPolicy

SYSTEM_CA_BUNDLES = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pki/tls/certs/ca-bundle.crt"))


@dataclass
class TokenRegistry:
    """A running token registry: the registry, its token service, the lab CA and a bundle of system CAs + it."""

    registry: RegistryServer
    tokens: TokenService
    ca: CertificateAuthority
    ca_bundle: Path

    @property
    def host(self) -> str:
        return self.registry.host

    def credentials(self, user: str) -> Credentials:
        return Credentials(user, self.tokens.accounts[user].password)

    def client(
        self, user: str | None, *, lab_bundle: bool = True, retry: RetryPolicy | None = None
    ) -> RegistryClient:
        """A RegistryClient for ``user`` (None: anonymous) that trusts the lab's bundle; ``lab_bundle=False`` leaves
        trust to the client's own rules (SSL_CERT_FILE, certs.d), as a run of the tool without the bundle has it."""
        return RegistryClient(
            self.host,
            credentials=self.credentials(user) if user else None,
            ca_bundle=self.ca_bundle if lab_bundle else None,
            retry=retry,
        )

    def stop(self) -> None:
        self.registry.stop()
        self.tokens.stop()
        shutil.rmtree(self.registry.data_dir, ignore_errors=True)


def start_token_registry(
    workdir: Path,
    *,
    accounts: Mapping[str, Account],
    anonymous: Mapping[str, Level] | None = None,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    style: Style = Style.DOCKER_HUB,
    realm_host_name: str = REALM_HOST_NAME,
    ca: CertificateAuthority | None = None,
) -> TokenRegistry:
    """Start a token service, then a registry that trusts its tokens; stop both with ``TokenRegistry.stop()``."""
    if shutil.which("docker-registry") is None:
        raise LabError(
            "Debian's docker-registry is not installed",
            fix="apt-get install docker-registry (distribution 2.8)",
        )
    workdir.mkdir(parents=True, exist_ok=True)
    ca = ca or CertificateAuthority.create(workdir / "ca")
    bundle = workdir / "ca-bundle.pem"
    bundle.write_bytes(_system_cas().rstrip(b"\n") + b"\n" + ca.cert_path.read_bytes())
    tokens = TokenService(
        workdir / "tokens",
        ca,
        accounts=accounts,
        anonymous=anonymous,
        lifetime_s=lifetime_s,
        style=style,
        host_name=realm_host_name,
    )
    try:
        registry = start_registry(
            workdir / "registry",
            ca=ca,
            token=TokenAuth(realm=tokens.realm, service=SERVICE, issuer=ISSUER, rootcertbundle=ca.cert_path),
        )
    except BaseException:
        tokens.stop()
        raise
    return TokenRegistry(registry=registry, tokens=tokens, ca=ca, ca_bundle=bundle)


def _system_cas() -> bytes:
    for path in SYSTEM_CA_BUNDLES:
        if path.is_file():
            return path.read_bytes()
    return Path(certifi.where()).read_bytes()


__all__ = ["TokenRegistry", "start_token_registry"]
