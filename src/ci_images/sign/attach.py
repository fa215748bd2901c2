"""What a published image gets, and what verify-images checks on it: one call each, over every digest of the image.

Every digest a run publishes (the index and each platform manifest) gets a provenance. Each platform manifest gets
the SBOM of its own files, and the index one SBOM attestation per platform (that platform's document, about the
index digest, ``describes`` naming the platform manifest), so `cosign verify-attestation --type spdxjson IMAGE:TAG`
(which resolves the tag to the index and reads its attestations, never a platform's) passes for the index too. A
single-manifest image is its own only platform.

Predicates are made only for what is missing (``attest.Wanted``): an image whose attestations are all there costs a
few reads of its ``.att`` tags, no upstream manifest and no syft scan.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import platform_digests
from ci_images.registry.pool import ClientPool
from ci_images.sign.attest import Attester, AttestOutcome, KeyAttester, Wanted
from ci_images.sign.attest_verify import (
    WRONG_BASE,
    AttestationChecker,
    AttestationVerdict,
    AttestationVerifier,
)
from ci_images.sign.sbom import SbomGenerator
from ci_images.sign.signer import KeySigner, Signer, Verifier
from ci_images.sign.statement import SLSA_PROVENANCE_V1, SPDX_DOCUMENT

PREDICATE_TYPES = (SLSA_PROVENANCE_V1, SPDX_DOCUMENT)
# What verify-images calls each check of a digest (its --json "check" field).
CHECK_NAMES = {SLSA_PROVENANCE_V1: "provenance", SPDX_DOCUMENT: "sbom"}
SIGNATURE_CHECK = "signature"

# The predicate of the provenance about a subject that covers these platforms (the index: all of them).
PredicateFor = Callable[[Sequence[str]], Mapping[str, Any]]


@dataclass(frozen=True)
class ImageDigests:
    """The digests of one published image: its index (None for a single manifest) and each platform's manifest,
    with that manifest's layer digests (what lets manifests with the same files share one SBOM)."""

    index: str | None
    platforms: Mapping[str, str]
    layers: Mapping[str, tuple[str, ...]]

    @property
    def top(self) -> str:
        return self.index or next(iter(self.platforms.values()))

    def subjects(self) -> list[tuple[str, tuple[str, ...]]]:
        """(digest, platforms it covers): the index first, then each platform manifest."""
        subjects: list[tuple[str, tuple[str, ...]]] = []
        if self.index is not None:
            subjects.append((self.index, tuple(sorted(self.platforms))))
        subjects.extend((digest, (platform,)) for platform, digest in sorted(self.platforms.items()))
        return subjects


def read_image(client: RegistryClient, repository: Repository, digest: str) -> ImageDigests:
    """The digests of ``repository@digest`` as the registry serves them (a GET of the index and of each manifest)."""
    platforms = platform_digests(client, repository.path, digest)
    layers: dict[str, tuple[str, ...]] = {}
    for one in platforms.values():
        got = client.get_manifest(repository.path, one)
        if got is None:
            raise RegistryError(f"{repository.with_digest(one)} vanished", fix="run again")
        document = json.loads(got[1])
        layers[one] = tuple(str(layer.get("digest")) for layer in document.get("layers") or [])
    index = None if list(platforms.values()) == [digest] else digest
    return ImageDigests(index, dict(platforms), layers)


def wanted(
    image: ImageDigests,
    *,
    provenance_for: PredicateFor,
    sbom_for: Callable[[str], Mapping[str, Any]] | None,
    same_files: Callable[[str], frozenset[str]] = frozenset,
) -> list[Wanted]:
    """Every attestation ``image`` should carry: a provenance per digest, and (with ``sbom_for``, platform manifest
    digest -> its SPDX document) the SBOMs the module describes."""
    result: list[Wanted] = []
    for digest, covered in image.subjects():

        def predicate(covered: Sequence[str] = covered) -> Mapping[str, Any]:
            return provenance_for(covered)

        result.append(Wanted(digest, SLSA_PROVENANCE_V1, predicate))
    if sbom_for is None:
        return result
    for _, digest in sorted(image.platforms.items()):

        def document(digest: str = digest) -> Mapping[str, Any]:
            return sbom_for(digest)

        if digest != image.index:
            result.append(Wanted(digest, SPDX_DOCUMENT, document))
        if image.index is not None:
            result.append(Wanted(image.index, SPDX_DOCUMENT, document, digest, same_files(digest)))
    return result


def attest_image(
    client: RegistryClient, repository: Repository, wants: Sequence[Wanted], attester: Attester
) -> list[AttestOutcome]:
    """Attach each of ``wants`` that is not there yet; outcomes in the same order."""
    return [attester.attest(client, repository, one) for one in wants]


def attester_for(signer: Signer) -> Attester:
    """The attester that signs like ``signer``: its key, or keyless with its identity policy."""
    if isinstance(signer, KeySigner):
        return KeyAttester(signer.key)
    from ci_images.sign.keyless_attest import KeylessAttester, identity_flags
    from ci_images.sign.signer import KeylessSigner

    assert isinstance(signer, KeylessSigner)
    return KeylessAttester(signer.env, identity=signer.signer, identity_flags=identity_flags(signer))


def sbom_generator(env: Mapping[str, str], *, parallel: int) -> SbomGenerator:
    return SbomGenerator(env, parallel=parallel)


# ---- verify-images --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestCheck:
    """One check of one digest of a published image: its signature, or one of its attestations."""

    digest: str
    platform: str | None  # None: the tag's own digest
    check: str  # "signature", "provenance", "sbom"
    problem: str | None
    message: str
    signer: str | None = None
    statement: str | None = None  # an attestation's statement digest (sha256 of the in-toto statement)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_record(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "platform": self.platform,
            "check": self.check,
            "ok": self.ok,
            "problem": self.problem,
            "message": self.message,
            "signer": self.signer,
            "statement": self.statement,
        }


def _attestation_check(verdict: AttestationVerdict, platform: str | None) -> DigestCheck:
    return DigestCheck(
        verdict.digest,
        platform,
        CHECK_NAMES.get(verdict.predicate_type, verdict.predicate_type),
        verdict.problem,
        verdict.message,
        verdict.signer,
        verdict.statement,
    )


def check_image(
    client: RegistryClient,
    repository: Repository,
    image: ImageDigests,
    *,
    verifier: Verifier | None,
    checker: AttestationChecker | None,
    expected_upstreams: Collection[str] = (),
    predicate_types: Sequence[str] = PREDICATE_TYPES,
) -> list[DigestCheck]:
    """Every check of ``image`` beyond its top digest's signature (which verify-images checks per tag): each
    platform manifest's signature (with ``verifier``), and each digest's attestations (with ``checker``), whose
    provenance must name the one upstream digest in ``expected_upstreams`` (the lock file's, the image's label)."""
    checks = _platform_signatures(client, repository, image, verifier) if verifier is not None else []
    if checker is not None:
        checks += _attestations(client, repository, image, checker, expected_upstreams, predicate_types)
    return checks


def _platform_signatures(
    client: RegistryClient, repository: Repository, image: ImageDigests, verifier: Verifier
) -> list[DigestCheck]:
    checks: list[DigestCheck] = []
    for platform, digest in sorted(image.platforms.items()):
        if digest == image.top:
            continue
        verdict = verifier.verify(client, repository, digest)
        checks.append(
            DigestCheck(digest, platform, SIGNATURE_CHECK, verdict.problem, verdict.message, verdict.signer)
        )
    return checks


def _attestations(
    client: RegistryClient,
    repository: Repository,
    image: ImageDigests,
    checker: AttestationChecker,
    expected_upstreams: Collection[str],
    predicate_types: Sequence[str],
) -> list[DigestCheck]:
    checks: list[DigestCheck] = []
    labels = {digest: platform for platform, digest in image.platforms.items()}
    upstreams = sorted(set(expected_upstreams))
    for digest, _ in image.subjects():
        platform = None if digest == image.index else labels.get(digest)
        for kind in predicate_types:
            if kind == SLSA_PROVENANCE_V1 and len(upstreams) > 1:
                message = f"wrong base: the lock file and the image's labels disagree: {', '.join(upstreams)}"
                checks.append(DigestCheck(digest, platform, CHECK_NAMES[kind], WRONG_BASE, message))
                continue
            expected = upstreams[0] if upstreams else None
            verdict = checker.check(client, repository, digest, kind, expected_upstream=expected)
            checks.append(_attestation_check(verdict, platform))
    return checks


def observed_attestations(
    client: RegistryClient, repository: Repository, image: ImageDigests, checker: AttestationChecker
) -> list[AttestOutcome]:
    """How the digests of ``image`` are attested now, as the lock file records it (reads only)."""
    return [
        outcome
        for digest, _ in image.subjects()
        for kind in PREDICATE_TYPES
        for outcome in checker.observe(client, repository, digest, kind)
    ]


def checker_for(verifier: Verifier) -> AttestationChecker:
    """The attestation checker that trusts what ``verifier`` trusts: its public key, or its keyless identity."""
    from ci_images.sign.signer import KeylessSigner, KeyVerifier

    if isinstance(verifier, KeyVerifier):
        return AttestationVerifier(verifier.public_key)
    from ci_images.sign.keyless_attest import KeylessAttestationVerifier, identity_flags

    assert isinstance(verifier, KeylessSigner)
    return KeylessAttestationVerifier(
        verifier.env, identity=verifier.signer, identity_flags=identity_flags(verifier)
    )


def attestations_now(
    pool: ClientPool, repository: Repository, digest: str, verifier: Verifier
) -> tuple[AttestOutcome, ...]:
    """How every digest of ``repository@digest``'s image is attested now, by what ``verifier`` trusts (reads only)."""
    client = pool.get(repository.api_host)
    image = read_image(client, repository, digest)
    return tuple(observed_attestations(client, repository, image, checker_for(verifier)))
