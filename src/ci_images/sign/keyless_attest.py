"""Keyless attestations through the cosign CLI (GitHub Actions' OIDC identity), beside ``keyless`` for signatures.

``cosign attest --predicate FILE --type T`` makes the statement itself (cmd/cosign/cli/attest/attest.go: subject the
repository and digest, ``_type`` v0.1) from the predicate we build; cosign v3 stores it as a Sigstore bundle (an
OCI referrer, or the ``sha256-<hex>`` fallback tag where the registry has no referrers API, as GHCR), which its
``verify-attestation`` finds first (cmd/cosign/cli/verify/verify_attestation.go falls back to ``.att`` only when no
bundle exists). The predicate goes through a private temporary file: it is no secret, but it can be megabytes.

What verified, ``cosign verify-attestation`` prints on standard output, one envelope per line (cmd/cosign/cli/verify/
common.go ``PrintVerification``, "text" mode: each verified attestation's payload, the DSSE envelope JSON), and the
certificate's SAN on standard error ("Certificate subject: ..."). ``KeylessAttester`` reads both: an attestation is
there when a verified statement of the type names the digest (cosign checked the subject and type) and, for an
index's SBOM of one platform, when syft's document names a manifest with that platform's files (no annotation can
say it: cosign attest writes none).

Which certificates count is the signer's identity policy, given here as cosign's flags (``identity_flags``), so that
the attestations verify exactly as the signatures do.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ci_images.catalog.refs import Repository
from ci_images.errors import SigningError, UsageError
from ci_images.log import log
from ci_images.registry.client import RegistryClient
from ci_images.sign import dsse, keyless, provenance, sbom
from ci_images.sign import statement as statements
from ci_images.sign.attest import KEYLESS, AttestOutcome, Wanted
from ci_images.sign.attest_verify import MISSING, WRONG_BASE, AttestationVerdict
from ci_images.sign.keyless import COSIGN
from ci_images.sign.signer import KeylessSigner
from ci_images.sign.statement import COSIGN_TYPES

KEYLESS_FAILED = "attestation-keyless"  # cosign verify-attestation refused (its own message says why)


def cosign_type(predicate_type: str) -> str:
    """cosign's ``--type`` for a predicate type URI (its own name when it has one)."""
    return COSIGN_TYPES.get(predicate_type, predicate_type)


def attest_argv(image: str, predicate: Path, predicate_type: str) -> list[str]:
    """``cosign attest --yes --type T --predicate FILE REF@DIGEST``."""
    if "@sha256:" not in image:
        raise UsageError(
            f"refusing to attest {image} by tag", fix="attest REF@DIGEST, never a tag that can move"
        )
    return [
        COSIGN,
        "attest",
        "--yes",
        "--type",
        cosign_type(predicate_type),
        "--predicate",
        str(predicate),
        image,
    ]


def verify_attestation_argv(image: str, predicate_type: str, identity_flags: Sequence[str]) -> list[str]:
    """``cosign verify-attestation`` of a keyless attestation by a certificate ``identity_flags`` accept."""
    return [COSIGN, "verify-attestation", "--type", cosign_type(predicate_type), *identity_flags, image]


def verify_attestation_key_argv(image: str, predicate_type: str, public_key: str) -> list[str]:
    """What a consumer runs against a key's attestation (no transparency log: key mode writes none)."""
    return [
        COSIGN,
        "verify-attestation",
        "--key",
        public_key,
        "--type",
        cosign_type(predicate_type),
        "--insecure-ignore-tlog",
        image,
    ]


@contextmanager
def predicate_file(predicate: Mapping[str, Any]) -> Iterator[Path]:
    """``predicate`` as JSON in a private temporary file, removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="ci-images-predicate-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(predicate, out, separators=(",", ":"))
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


# ---- reading cosign's output ------------------------------------------------------------------------------------


def verified_statements(output: str) -> list[statements.Statement]:
    """The statements of the envelopes `cosign verify-attestation` printed (lines that are not one are skipped)."""
    found: list[statements.Statement] = []
    for line in output.splitlines():
        if not line.lstrip().startswith("{"):
            continue
        envelope = dsse.parse(line.strip().encode())
        claim = statements.read(envelope.body) if envelope is not None else None
        if claim is not None:
            found.append(claim)
    return found


def certificate_subject(output: str) -> str | None:
    """The SAN `cosign verify-attestation` prints for the certificate that signed ("Certificate subject: ...")."""
    for line in output.splitlines():
        if line.startswith("Certificate subject:"):
            return line.partition(":")[2].strip() or None
    return None


def _describes(claim: statements.Statement) -> str | None:
    """The manifest an SBOM statement's document was made from, when it is not the statement's subject (an index's
    SBOM of one platform); None otherwise."""
    if claim.predicate_type != statements.SPDX_DOCUMENT:
        return None
    scanned = sbom.scanned_digest(claim.predicate)
    return None if scanned is None or claim.names_digest(scanned) else scanned


def _is_for(claim: statements.Statement, wanted: Wanted) -> bool:
    if claim.predicate_type != wanted.predicate_type or not claim.names_digest(wanted.digest):
        return False
    if wanted.describes is None:
        return True
    return sbom.scanned_digest(claim.predicate) in {wanted.describes, *wanted.same_files}


class KeylessAttester:
    """`cosign attest` with this workflow's identity; checked with `cosign verify-attestation` under the same
    identity flags as the signatures."""

    mode = KEYLESS

    def __init__(self, env: Mapping[str, str], *, identity: str, identity_flags: Sequence[str]) -> None:
        self.env = env
        self.signer = identity
        self.identity_flags = list(identity_flags)

    def verified_output(
        self, client: RegistryClient, repository: Repository, digest: str, predicate_type: str
    ) -> tuple[int, str]:
        return keyless.run_cosign(
            verify_attestation_argv(repository.with_digest(digest), predicate_type, self.identity_flags),
            self.env,
            host=client.host,
            credentials=client.credentials,
            check=False,
        )

    def _present(
        self, client: RegistryClient, repository: Repository, wanted: Wanted
    ) -> AttestOutcome | None:
        code, output = self.verified_output(client, repository, wanted.digest, wanted.predicate_type)
        if code != 0:
            return None
        for claim in verified_statements(output):
            if _is_for(claim, wanted):
                signer = certificate_subject(output) or self.signer
                return AttestOutcome(
                    wanted.digest,
                    wanted.predicate_type,
                    signer,
                    claim.statement_digest,
                    False,
                    _describes(claim),
                    mode=KEYLESS,
                )
        return None

    def attest(self, client: RegistryClient, repository: Repository, wanted: Wanted) -> AttestOutcome:
        image = repository.with_digest(wanted.digest)
        present = self._present(client, repository, wanted)
        if present is not None:
            return present
        with predicate_file(wanted.predicate()) as path:
            keyless.run_cosign(
                attest_argv(image, path, wanted.predicate_type),
                self.env,
                host=client.host,
                credentials=client.credentials,
                check=True,
            )
        written = self._present(client, repository, wanted)
        if written is None:
            raise SigningError(
                f"{image}: the {wanted.predicate_type} attestation cosign just wrote does not verify",
                fix="see cosign's message above; keyless attestations need `id-token: write`",
            )
        log.info(f"attested {image} ({wanted.predicate_type}) keyless as {written.signer}")
        return AttestOutcome(
            written.digest,
            written.predicate_type,
            written.signer,
            written.statement,
            True,
            written.describes,
            mode=KEYLESS,
        )


class KeylessAttestationVerifier:
    """verify-images without a key: `cosign verify-attestation` under the signer's identity flags, then our own
    check of the provenance's upstream digest in what cosign verified."""

    mode = KEYLESS

    def __init__(self, env: Mapping[str, str], *, identity: str, identity_flags: Sequence[str]) -> None:
        self.attester = KeylessAttester(env, identity=identity, identity_flags=identity_flags)
        self.signer = identity

    def check(
        self,
        client: RegistryClient,
        repository: Repository,
        digest: str,
        predicate_type: str,
        *,
        expected_upstream: str | None = None,
    ) -> AttestationVerdict:
        code, output = self.attester.verified_output(client, repository, digest, predicate_type)
        claims = [c for c in verified_statements(output) if c.names_digest(digest)] if code == 0 else []
        if not claims:
            tail = output.strip().splitlines()[-1] if output.strip() else f"cosign exited {code}"
            problem = MISSING if "no matching attestations" in output.lower() else KEYLESS_FAILED
            return AttestationVerdict(digest, predicate_type, problem, f"keyless: {tail}")
        signer = certificate_subject(output) or self.signer
        if predicate_type != statements.SLSA_PROVENANCE_V1:
            return AttestationVerdict(
                digest, predicate_type, None, "verified keyless", signer, statement=claims[0].statement_digest
            )
        upstreams = {provenance.upstream_digest(c.predicate) for c in claims}
        good = [
            c
            for c in claims
            if expected_upstream is None or provenance.upstream_digest(c.predicate) == expected_upstream
        ]
        if not good:
            named = ", ".join(sorted(u or "nothing" for u in upstreams))
            return AttestationVerdict(
                digest,
                predicate_type,
                WRONG_BASE,
                f"wrong base: the provenance names upstream {named}, not {expected_upstream}",
            )
        upstream = provenance.upstream_digest(good[0].predicate)
        return AttestationVerdict(
            digest,
            predicate_type,
            None,
            "verified keyless",
            signer,
            upstream=upstream,
            statement=good[0].statement_digest,
        )

    def observe(
        self, client: RegistryClient, repository: Repository, digest: str, predicate_type: str
    ) -> list[AttestOutcome]:
        code, output = self.attester.verified_output(client, repository, digest, predicate_type)
        if code != 0:
            return []
        signer = certificate_subject(output) or self.signer
        return [
            AttestOutcome(
                digest, predicate_type, signer, claim.statement_digest, False, _describes(claim), mode=KEYLESS
            )
            for claim in verified_statements(output)
            if claim.predicate_type == predicate_type and claim.names_digest(digest)
        ]


def identity_flags(signer: KeylessSigner) -> list[str]:
    """cosign's identity flags of a keyless signer: the certificates its own verification accepts (its identity
    policy: the exact publishing workflow, or the reusable workflow for one caller)."""
    return signer.policy.flags()
