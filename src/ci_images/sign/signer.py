"""Signing and verifying behind one interface, for ``run/`` (push-images) and ``app`` (sign-images, verify-images).

``KeySigner`` signs in cosign's format with a key (COSIGN_KEY); ``KeylessSigner`` runs cosign with GitHub Actions'
OIDC identity. Both sign a digest only when it lacks a signature by them, read it back and verify it right after,
and raise SigningError (exit 9) when either step fails.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError, SigningError
from ci_images.log import log
from ci_images.oci import short_digest
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import platform_digests
from ci_images.sign import bundles, keyless, keys
from ci_images.sign import payload as documents
from ci_images.sign.store import append_signature, read_signatures
from ci_images.sign.verify import Verdict, verify_digest

KEY, KEYLESS = "key", "keyless"


@dataclass(frozen=True)
class SignOutcome:
    """How one entry's digest (and, with --recursive, its platform manifests) is signed after this run."""

    mode: str  # "key" or "keyless"
    signer: str  # the key's fingerprint, or the keyless identity
    digest: str
    signed: tuple[str, ...] = ()  # digests this run signed
    verified: tuple[str, ...] = ()  # digests whose signature was read back and verified
    platforms: Mapping[str, str] = field(default_factory=dict)  # platform -> manifest digest (--recursive)

    def as_record(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "signer": self.signer,
            "digest": self.digest,
            "signed": list(self.signed),
            "verified": list(self.verified),
            "platforms": dict(self.platforms),
        }

    def lock_record(self) -> dict[str, str]:
        """How the lock file names the signer."""
        if self.mode == KEY:
            return {"key": self.signer}
        return {"keyless": self.signer, "issuer": keyless.GITHUB_ISSUER}


class Verifier(Protocol):
    mode: str
    signer: str

    def verify(self, client: RegistryClient, repository: Repository, digest: str) -> Verdict: ...


class Signer(Verifier, Protocol):
    def sign(
        self, client: RegistryClient, repository: Repository, digest: str, *, recursive: bool = False
    ) -> SignOutcome: ...


def _digests(client: RegistryClient, repository: Repository, digest: str, recursive: bool) -> dict[str, str]:
    """{label: digest} to sign: the digest itself, and with ``recursive`` each platform manifest of its index."""
    wanted = {"": digest}
    if recursive:
        for platform, child in sorted(platform_digests(client, repository.path, digest).items()):
            if child != digest:
                wanted[platform] = child
    return wanted


class DigestLocks:
    """One lock per (repository, digest): two entries of a run sharing a digest must not both append to its ``.sig``
    (or, for the attesters, its ``.att``) tag."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def __call__(self, repository: Repository, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((str(repository), digest), threading.Lock())


class KeyVerifier:
    """Verifies with a public key, byte-compatibly with `cosign verify --key cosign.pub`."""

    mode = KEY

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        self.public_key = public_key
        self.signer = keys.fingerprint(public_key)

    def verify(self, client: RegistryClient, repository: Repository, digest: str) -> Verdict:
        reference = documents.docker_reference(repository)
        return verify_digest(client, repository.path, reference, digest, self.public_key)


class KeySigner(KeyVerifier):
    def __init__(self, key: keys.SigningKey) -> None:
        super().__init__(key.public)
        self.key = key
        self._locks = DigestLocks()

    def sign(
        self, client: RegistryClient, repository: Repository, digest: str, *, recursive: bool = False
    ) -> SignOutcome:
        reference = documents.docker_reference(repository)
        signed: list[str] = []
        verified: list[str] = []
        wanted = _digests(client, repository, digest, recursive)
        for one in wanted.values():
            with self._locks(repository, one):
                try:
                    found = read_signatures(client, repository.path, one)
                    before = verify_digest(
                        client, repository.path, reference, one, self.public_key, found=found
                    )
                    if not before.ok:
                        body = documents.payload(reference, one)
                        signature = base64.b64encode(self.key.sign(body)).decode("ascii")
                        layer = documents.new_layer(body, signature, signer=self.signer)
                        append_signature(client, repository.path, one, body, layer)
                        signed.append(one)
                        log.info(f"signed {repository}@{one} with key {short_digest(self.signer)}")
                    after = self.verify(client, repository, one)
                except RegistryError as exc:
                    raise SigningError(f"signing {repository}@{one}: {exc.message}", fix=exc.fix) from exc
                if not after.ok:
                    raise SigningError(
                        f"{repository}@{one}: the signature just written does not verify: {after.message}",
                        fix="check that nothing else writes the .sig tags of this repository, and run again",
                    )
                verified.append(one)
        platforms = {label: d for label, d in wanted.items() if label}
        return SignOutcome(KEY, self.signer, digest, tuple(signed), tuple(verified), platforms)


class KeylessSigner:
    """cosign's keyless signing with this workflow's identity; verification under the identity policy (an exact
    publishing workflow, or the reusable workflow for one caller: see ``keyless``)."""

    mode = KEYLESS

    def __init__(self, env: Mapping[str, str], *, identity: str, policy: keyless.IdentityPolicy) -> None:
        self.env = env
        self.signer = identity
        self.policy = policy

    def _cosign(self, argv: Sequence[str], client: RegistryClient, *, check: bool) -> int:
        code, _ = keyless.run_cosign(
            list(argv), self.env, host=client.host, credentials=client.credentials, check=check
        )
        return code

    def _identity(self, output: str, client: RegistryClient, repository: Repository, digest: str) -> str:
        """Who signed, as exactly as can be known: the certificate's SAN that cosign prints for a legacy ``.sig``
        signature; for a v3 bundle (printed without it) the one identity an exact policy accepts, else the SAN of
        the bundle's certificate on the registry; the policy itself only when none of these can be read."""
        printed = keyless.certificate_identity(output)
        if printed:
            return printed
        if self.policy.identity is not None:
            return self.policy.identity
        try:
            found = bundles.bundle_identity(client, repository.path, digest, self.policy)
        except (RegistryError, SigningError) as exc:
            log.warning(
                f"{repository}@{digest}: cannot read the signing certificate from its bundle: {exc.message}"
            )
            found = None
        return found or str(self.policy)

    def verify(self, client: RegistryClient, repository: Repository, digest: str) -> Verdict:
        image = repository.with_digest(digest)
        code, output = keyless.run_cosign(
            keyless.verify_argv(image, self.policy),
            self.env,
            host=client.host,
            credentials=client.credentials,
            check=False,
        )
        if code == 0:
            # Who signed, as the certificate says: the lock file records that, not the identity this run would sign as.
            signer = self._identity(output, client, repository, digest)
            return Verdict(digest, None, f"verified keyless ({self.policy})", signer)
        tail = output.splitlines()[-1] if output else f"cosign verify exited {code}"
        return Verdict(digest, "keyless", f"keyless verification failed: {tail}")

    def sign(
        self, client: RegistryClient, repository: Repository, digest: str, *, recursive: bool = False
    ) -> SignOutcome:
        signed: list[str] = []
        signer = self.signer
        wanted = _digests(client, repository, digest, recursive)
        for one in wanted.values():
            image = repository.with_digest(one)
            before = self.verify(client, repository, one)
            if not before.ok:
                self._cosign(keyless.sign_argv(image), client, check=True)
                signed.append(one)
                log.info(f"signed {image} keyless as {self.signer}")
                before = self.verify(client, repository, one)
                if not before.ok:
                    raise SigningError(f"{image}: {before.message}", fix="see cosign's message above")
            if one == digest and before.signer:
                signer = before.signer  # the certificate's identity, as verification found it
        platforms = {label: d for label, d in wanted.items() if label}
        return SignOutcome(KEYLESS, signer, digest, tuple(signed), tuple(wanted.values()), platforms)
