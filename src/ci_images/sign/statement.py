"""in-toto Statements about one image digest: written as cosign's ``attest`` would, read as its verifier does. Pure.

The fields (in-toto/attestation spec/v1/statement.md): ``_type``, ``subject`` (ResourceDescriptors with a
``digest``), ``predicateType``, ``predicate``. What cosign makes of ``cosign attest --predicate P --type T REF@D``
(sigstore/cosign pkg/cosign/attestation/attestation.go ``GenerateStatement``): one subject, ``name`` the repository
(go-containerregistry ``Repository.String()``: ``index.docker.io/...`` for Docker Hub, as in ``.sig`` payloads) and
``digest`` ``{"sha256": HEX}``; ``predicateType`` from cmd/cosign/cli/options/predicate.go ``PredicateTypeMap``.

``_type``: cosign writes the legacy ``https://in-toto.io/Statement/v0.1`` and its verifier reads any value
(``IntotoSubjectClaimVerifier`` and pkg/policy/attestation.go look at ``subject`` and ``predicateType`` only); the v1
spec, SLSA provenance v1 and in-toto's own validators (go/v1/statement.go accepts v1 and v0.1) say
``https://in-toto.io/Statement/v1``. We write v1.

Only the four Statement fields, and only ResourceDescriptor's own fields: cosign parses the statement with
protojson, which refuses unknown fields (``Statement.UnmarshalJSON``), so an extra field would fail its verification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ci_images.oci import go_json, sha256_digest

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
SLSA_PROVENANCE_V1 = (
    "https://slsa.dev/provenance/v1"  # in-toto-golang slsa_provenance/v1 PredicateSLSAProvenance
)
SPDX_DOCUMENT = "https://spdx.dev/Document"  # in-toto-golang in_toto PredicateSPDX (`--type spdxjson`)
# cosign's --type names for the predicate types we write (cmd/cosign/cli/options/predicate.go).
COSIGN_TYPES = {SLSA_PROVENANCE_V1: "slsaprovenance1", SPDX_DOCUMENT: "spdxjson"}


def hex_of(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not hexdigest:
        raise ValueError(f"{digest!r} is not a sha256 digest")
    return hexdigest


def statement(
    subject_name: str, digest: str, predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_V1,
        "subject": [{"name": subject_name, "digest": {"sha256": hex_of(digest)}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def encode(document: Mapping[str, Any]) -> bytes:
    """The statement's bytes in the envelope: compact JSON, fields in the order written."""
    return go_json(document)


@dataclass(frozen=True)
class Statement:
    """What a statement says, as cosign's verifier reads it."""

    type: str
    predicate_type: str
    subject_digests: tuple[str, ...]  # "sha256:HEX" of every subject with a sha256 digest
    subject_names: tuple[str, ...]
    predicate: Mapping[str, Any] = field(default_factory=dict)
    statement_digest: str = ""  # sha256 of the statement's bytes as signed

    def names_digest(self, digest: str) -> bool:
        return digest in self.subject_digests


def read(body: bytes) -> Statement | None:
    """The statement in an envelope's payload, or None when it is not an in-toto statement."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    subjects = document.get("subject")
    kind, predicate_type = document.get("_type"), document.get("predicateType")
    if not isinstance(subjects, list) or not isinstance(kind, str) or not isinstance(predicate_type, str):
        return None
    digests: list[str] = []
    names: list[str] = []
    for subject in subjects:
        if not isinstance(subject, dict):
            return None  # cosign: "invalid in-toto statement: null subject entry"
        value = (
            (subject.get("digest") or {}).get("sha256") if isinstance(subject.get("digest"), dict) else None
        )
        if isinstance(value, str):
            digests.append(f"sha256:{value}")
        names.append(str(subject.get("name", "")))
    predicate = document.get("predicate")
    return Statement(
        kind,
        predicate_type,
        tuple(digests),
        tuple(names),
        predicate if isinstance(predicate, dict) else {},
        sha256_digest(body),
    )
