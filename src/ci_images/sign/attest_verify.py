"""Check one digest's attestation of one predicate type against one public key, as `cosign verify-attestation --key
K --type T --insecure-ignore-tlog` does, and say what is wrong when it fails.

cosign accepts a digest when some layer of its ``.att`` tag is a DSSE envelope of an in-toto statement whose
signature verifies with the key over DSSE's PAE, whose subject names the digest (pkg/cosign/verifiers.go
``IntotoSubjectClaimVerifier``) and whose ``predicateType`` is the one asked for (pkg/policy/attestation.go). We ask
the same, and for a provenance also that the upstream digest it names is the one expected (the lock file's, the
image's ``org.opencontainers.image.base.digest`` label). One problem name per cause:

- ``attestation-missing``: no ``.att`` tag, or no attestation of this predicate type in it;
- ``attestation-edited``: a layer that says this key made it (our signer annotation) does not verify: its statement
  (or signature) was changed after signing; or the layer is no DSSE envelope of an in-toto statement at all;
- ``attestation-wrong-key``: attestations of this type are there, none verifies with this key;
- ``attestation-wrong-subject``: one verifies with this key, but its subject is another digest (an attestation of
  another image moved under this digest's tag);
- ``provenance-wrong-base``: the provenance verifies and names this digest, but another upstream digest.

Which applies is a diagnosis from what the layers say about themselves: a forger can make a layer say anything, but
never make verification pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from ci_images.catalog.refs import Repository
from ci_images.oci import short_digest
from ci_images.registry.client import RegistryClient
from ci_images.sign import dsse, keys, provenance
from ci_images.sign import statement as statements
from ci_images.sign.attest import (
    KEY,
    PREDICATE_TYPE_ANNOTATION,
    Attestations,
    AttestOutcome,
    Found,
    read_attestations,
    verified_statement,
)
from ci_images.sign.payload import Layer

MISSING, EDITED, WRONG_KEY, WRONG_SUBJECT, WRONG_BASE = (
    "attestation-missing",
    "attestation-edited",
    "attestation-wrong-key",
    "attestation-wrong-subject",
    "provenance-wrong-base",
)
_RANK = {WRONG_BASE: 0, WRONG_SUBJECT: 1, EDITED: 2, WRONG_KEY: 3}


@dataclass(frozen=True)
class AttestationVerdict:
    digest: str
    predicate_type: str
    problem: str | None  # None: verified
    message: str
    signer: str | None = None  # the fingerprint that verified
    envelope: str | None = None  # the verified layer's digest
    upstream: str | None = None  # a provenance's upstream digest
    statement: str | None = None  # sha256 of the verified statement

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_record(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "predicate_type": self.predicate_type,
            "ok": self.ok,
            "problem": self.problem,
            "message": self.message,
            "signer": self.signer,
            "statement": self.statement,
            "envelope": self.envelope,
            "upstream": self.upstream,
        }


class AttestationChecker(Protocol):
    """verify-images' check of one digest's attestation of one type: with a key, or keyless through cosign."""

    mode: str
    signer: str

    def check(
        self,
        client: RegistryClient,
        repository: Repository,
        digest: str,
        predicate_type: str,
        *,
        expected_upstream: str | None = None,
    ) -> AttestationVerdict: ...

    def observe(
        self, client: RegistryClient, repository: Repository, digest: str, predicate_type: str
    ) -> list[AttestOutcome]:
        """Every attestation of this type on ``digest`` that verifies (reads only): what the lock file records."""
        ...


def judge(
    held: Attestations,
    *,
    digest: str,
    predicate_type: str,
    public_key: ec.EllipticCurvePublicKey,
    expected_upstream: str | None = None,
) -> AttestationVerdict:
    """The verdict on ``held`` (the layers read from ``digest``'s ``.att`` tag). Pure."""
    ours = keys.fingerprint(public_key)
    problems: list[tuple[int, str, str]] = []
    seen_types: set[str] = set()
    for found in held.found:
        problem = _judge_layer(found, digest, predicate_type, public_key, ours, expected_upstream, seen_types)
        if isinstance(problem, AttestationVerdict):
            return problem
        if problem is not None:
            problems.append((_RANK[problem[0]], *problem))
    if problems:
        problems.sort()
        _, name, message = problems[0]
        return AttestationVerdict(digest, predicate_type, name, message)
    if not held.exists:
        where = f"{held.tag} does not exist"
    elif seen_types:
        where = f"{held.tag} holds {', '.join(sorted(seen_types))} only"
    else:
        where = f"{held.tag} holds no attestation of that type"
    return AttestationVerdict(
        digest, predicate_type, MISSING, f"missing: no {predicate_type} attestation ({where})"
    )


def _judge_layer(
    found: Found,
    digest: str,
    predicate_type: str,
    public_key: ec.EllipticCurvePublicKey,
    ours: str,
    expected_upstream: str | None,
    seen_types: set[str],
) -> AttestationVerdict | tuple[str, str] | None:
    """A verdict when ``found`` passes; a (problem, message) when it is of this type and fails; None when it is of
    another type."""
    layer = f"layer {short_digest(found.layer.digest)}"
    envelope = dsse.parse(found.blob)
    annotated = found.predicate_type == predicate_type
    if envelope is None or envelope.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        return (
            (EDITED, f"edited: {layer} is not a DSSE envelope of an in-toto statement") if annotated else None
        )
    claim = statements.read(envelope.body)
    if not dsse.verify(public_key, envelope):
        if not annotated and (claim is None or claim.predicate_type != predicate_type):
            if claim is not None:
                seen_types.add(claim.predicate_type)
            return None
        if found.layer.signer == ours or not any(dsse.is_ecdsa_signature(s) for s in envelope.signatures):
            message = f"edited: {layer} says key {short_digest(ours)} signed it; its signature does not verify over it"
            return (EDITED, message)
        other = short_digest(found.layer.signer, empty="") or "another key"
        message = f"wrong key: signed by {other}; no {predicate_type} attestation verifies with key {short_digest(ours)}"
        return (WRONG_KEY, message)
    if claim is None:
        return (EDITED, f"edited: {layer} verifies but holds no in-toto statement")
    if claim.predicate_type != predicate_type:
        seen_types.add(claim.predicate_type)
        return None
    if not claim.names_digest(digest):
        named = ", ".join(claim.subject_digests) or "no digest"
        return (
            WRONG_SUBJECT,
            f"wrong subject: the {predicate_type} attestation under this digest's tag is about {named}, not {digest}",
        )
    is_provenance = predicate_type == statements.SLSA_PROVENANCE_V1
    upstream = provenance.upstream_digest(claim.predicate) if is_provenance else None
    if is_provenance and expected_upstream is not None and upstream != expected_upstream:
        return (
            WRONG_BASE,
            f"wrong base: the provenance names upstream {upstream or 'nothing'}, not {expected_upstream}",
        )
    return AttestationVerdict(
        digest,
        predicate_type,
        None,
        f"{predicate_type} attestation verified with key {short_digest(ours)}",
        ours,
        found.layer.digest,
        upstream,
        claim.statement_digest,
    )


class AttestationVerifier:
    """Checks attestations with a public key, as `cosign verify-attestation --key cosign.pub` does."""

    mode = KEY

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        self.public_key = public_key
        self.signer = keys.fingerprint(public_key)

    def check(
        self,
        client: RegistryClient,
        repository: Repository,
        digest: str,
        predicate_type: str,
        *,
        expected_upstream: str | None = None,
    ) -> AttestationVerdict:
        """The verdict on ``repository@digest``'s ``predicate_type`` attestation (and its upstream digest, when
        ``expected_upstream`` is given). Reads the layers annotated with that type first, the others only if none
        of those passes."""

        def annotated(layer: Layer) -> bool:
            return bool(layer.annotations.get(PREDICATE_TYPE_ANNOTATION) == predicate_type)

        held = read_attestations(client, repository.path, digest, wanted=annotated)
        verdict = judge(
            held,
            digest=digest,
            predicate_type=predicate_type,
            public_key=self.public_key,
            expected_upstream=expected_upstream,
        )
        if verdict.ok or len(held.found) == sum(
            1 for layer in held.layers if layer.media_type == dsse.ENVELOPE_MEDIA_TYPE
        ):
            return verdict
        everything = read_attestations(client, repository.path, digest)
        return judge(
            everything,
            digest=digest,
            predicate_type=predicate_type,
            public_key=self.public_key,
            expected_upstream=expected_upstream,
        )

    def observe(
        self, client: RegistryClient, repository: Repository, digest: str, predicate_type: str
    ) -> list[AttestOutcome]:
        def annotated(layer: Layer) -> bool:
            return bool(layer.annotations.get(PREDICATE_TYPE_ANNOTATION) == predicate_type)

        found: list[AttestOutcome] = []
        for one in read_attestations(client, repository.path, digest, wanted=annotated).found:
            claim = verified_statement(one, self.public_key, digest, predicate_type)
            if claim is not None:
                outcome = AttestOutcome(
                    digest,
                    predicate_type,
                    self.signer,
                    claim.statement_digest,
                    False,
                    one.describes,
                    one.layer.digest,
                )
                found.append(outcome)
        return found
