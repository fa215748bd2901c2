"""What a published image gets, in one call each for ``run/`` (push-images) and ``verify-images``.

Every digest a run publishes (the index and each platform manifest) gets a provenance; each platform manifest gets
the SBOM of its own content, and the index one SBOM attestation per platform (the platform's document, about the
index digest, ``describes`` naming the platform manifest), so ``cosign verify-attestation --type spdxjson`` passes
for the index too. A single-manifest image is its own only platform.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ci_images.catalog.refs import Repository
from ci_images.registry.client import RegistryClient
from ci_images.sign.attest import AttestOutcome, KeyAttester
from ci_images.sign.attest_verify import AttestationVerdict, AttestationVerifier
from ci_images.sign.sbom import SbomGenerator
from ci_images.sign.statement import SLSA_PROVENANCE_V1, SPDX_DOCUMENT

# The predicate of the provenance about a subject that covers these platforms (the index: all of them).
PredicateFor = Callable[[Sequence[str]], Mapping[str, Any]]


def _subjects(index: str | None, platforms: Mapping[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    """(digest, platforms it covers): the index first, then each platform manifest that is not the index itself."""
    subjects: list[tuple[str, tuple[str, ...]]] = []
    if index is not None:
        subjects.append((index, tuple(sorted(platforms))))
    subjects.extend(
        (digest, (platform,)) for platform, digest in sorted(platforms.items()) if digest != index
    )
    return subjects


def attest_image(
    client: RegistryClient,
    repository: Repository,
    *,
    index: str | None,
    platforms: Mapping[str, str],
    provenance_for: PredicateFor,
    attester: KeyAttester,
    sboms: SbomGenerator | None,
) -> list[AttestOutcome]:
    """Provenance for every digest of the image, SBOMs as the module says (none when ``sboms`` is None); nothing is
    written where an equivalent attestation is there already."""
    outcomes: list[AttestOutcome] = []
    for digest, covered in _subjects(index, platforms):
        outcomes.append(
            attester.attest(client, repository, digest, SLSA_PROVENANCE_V1, provenance_for(covered))
        )
    if sboms is None:
        return outcomes
    for _, digest in sorted(platforms.items()):
        document = sboms.spdx(client, repository, digest)
        if digest != index:
            outcomes.append(attester.attest(client, repository, digest, SPDX_DOCUMENT, document))
        if index is not None:
            describes = None if digest == index else digest
            outcomes.append(
                attester.attest(client, repository, index, SPDX_DOCUMENT, document, describes=describes)
            )
    return outcomes


def check_image(
    client: RegistryClient,
    repository: Repository,
    *,
    index: str | None,
    platforms: Mapping[str, str],
    verifier: AttestationVerifier,
    expected_upstream: str | None,
    predicate_types: Sequence[str] = (SLSA_PROVENANCE_V1, SPDX_DOCUMENT),
) -> list[AttestationVerdict]:
    """One verdict per (digest, predicate type) of the image, the index first."""
    return [
        verdict
        for digest, _ in _subjects(index, platforms)
        for verdict in verifier.check_all(
            client, repository, digest, predicate_types, expected_upstream=expected_upstream
        )
    ]
