"""How verification names each way an attestation can be wrong (the issue's four tamper cases among them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ci_images.sign import attest, dsse, keys
from ci_images.sign import statement as statements
from ci_images.sign.attest import Attestations, Found
from ci_images.sign.attest_verify import (
    EDITED,
    MISSING,
    WRONG_BASE,
    WRONG_KEY,
    WRONG_SUBJECT,
    judge,
)
from tests.unit.sign.attestation_inputs import DIGEST, OTHER_DIGEST, REPOSITORY, UPSTREAM, build_predicate


def _found(
    key: keys.SigningKey,
    predicate_type: str,
    predicate: Mapping[str, Any],
    *,
    digest: str = DIGEST,
    body: bytes | None = None,
    signer: str | None = "key",
) -> Found:
    statement = attest.statement_bytes(REPOSITORY, digest, predicate_type, predicate)
    envelope = dsse.sign(key, statement)
    if body is not None:
        envelope = dsse.Envelope(envelope.payload_type, body, envelope.signatures)
    data = envelope.to_json()
    return Found(
        attest.new_layer(data, predicate_type, signer=key.fingerprint if signer == "key" else signer), data
    )


def _held(*found: Found) -> Attestations:
    return Attestations(attest.attestation_tag(DIGEST), tuple(found), "sha256:" + "99" * 32)


def _judge(held: Attestations, key: keys.SigningKey, kind: str = statements.SLSA_PROVENANCE_V1) -> Any:
    return judge(held, digest=DIGEST, predicate_type=kind, public_key=key.public, expected_upstream=UPSTREAM)


def test_a_good_provenance_and_sbom_verify(ours: keys.SigningKey) -> None:
    held = _held(
        _found(ours, statements.SLSA_PROVENANCE_V1, build_predicate()),
        _found(ours, statements.SPDX_DOCUMENT, {}),
    )
    for kind in (statements.SLSA_PROVENANCE_V1, statements.SPDX_DOCUMENT):
        verdict = _judge(held, ours, kind)
        assert verdict.ok, verdict.message
        assert verdict.signer == ours.fingerprint
    assert _judge(held, ours).upstream == UPSTREAM


def test_tampered_edited_statement(ours: keys.SigningKey) -> None:
    statement = json.loads(
        attest.statement_bytes(REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1, build_predicate())
    )
    statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] = "77" * 32
    edited = _found(ours, statements.SLSA_PROVENANCE_V1, build_predicate(), body=statements.encode(statement))
    verdict = _judge(_held(edited), ours)
    assert verdict.problem == EDITED
    assert "does not verify" in verdict.message


def test_tampered_signed_by_another_key(ours: keys.SigningKey, theirs: keys.SigningKey) -> None:
    verdict = _judge(_held(_found(theirs, statements.SLSA_PROVENANCE_V1, build_predicate())), ours)
    assert verdict.problem == WRONG_KEY
    assert theirs.fingerprint.removeprefix("sha256:")[:12] in verdict.message
    unannotated = _found(theirs, statements.SLSA_PROVENANCE_V1, build_predicate(), signer=None)
    assert _judge(_held(unannotated), ours).problem == WRONG_KEY  # as cosign writes it: no signer annotation


def test_tampered_moved_from_another_digest(ours: keys.SigningKey) -> None:
    moved = _found(ours, statements.SLSA_PROVENANCE_V1, build_predicate(), digest=OTHER_DIGEST)
    verdict = _judge(_held(moved), ours)
    assert verdict.problem == WRONG_SUBJECT
    assert OTHER_DIGEST in verdict.message


def test_tampered_provenance_naming_another_base(ours: keys.SigningKey) -> None:
    other = _found(ours, statements.SLSA_PROVENANCE_V1, build_predicate(upstream="sha256:" + "88" * 32))
    verdict = _judge(_held(other), ours)
    assert verdict.problem == WRONG_BASE
    assert "88" * 32 in verdict.message and UPSTREAM in verdict.message
    # Without an expected upstream, the same attestation verifies (what cosign checks).
    assert judge(
        _held(other), digest=DIGEST, predicate_type=statements.SLSA_PROVENANCE_V1, public_key=ours.public
    ).ok


def test_missing_and_other_types(ours: keys.SigningKey) -> None:
    nothing = Attestations(attest.attestation_tag(DIGEST))
    assert _judge(nothing, ours).problem == MISSING
    assert "does not exist" in _judge(nothing, ours).message
    only_sbom = _held(_found(ours, statements.SPDX_DOCUMENT, {}))
    verdict = _judge(only_sbom, ours)
    assert verdict.problem == MISSING and statements.SPDX_DOCUMENT in verdict.message
    junk = Found(attest.new_layer(b"not json", statements.SLSA_PROVENANCE_V1), b"not json")
    assert _judge(_held(junk), ours).problem == EDITED


def test_one_good_layer_among_bad_ones_verifies(ours: keys.SigningKey, theirs: keys.SigningKey) -> None:
    """As cosign: layers that do not verify are skipped."""
    held = _held(
        _found(theirs, statements.SLSA_PROVENANCE_V1, build_predicate()),
        _found(ours, statements.SLSA_PROVENANCE_V1, build_predicate(), digest=OTHER_DIGEST),
        _found(ours, statements.SLSA_PROVENANCE_V1, build_predicate()),
    )
    assert _judge(held, ours).ok
