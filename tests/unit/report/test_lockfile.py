"""The lock file's attestation records: per attested digest its statements (what verified after the run), the
index a platform manifest belongs to, replaced when a run finds them again, dropped with the tags."""

from __future__ import annotations

import json
from pathlib import Path

from ci_images.report.lockfile import update_lock
from ci_images.run.result import Result
from ci_images.sign.attest import AttestOutcome

INDEX, AMD64, OTHER = ("sha256:" + c * 64 for c in "abc")
PROVENANCE, SBOM = "https://slsa.dev/provenance/v1", "https://spdx.dev/Document"


def _result(digest: str, attestations: tuple[AttestOutcome, ...], action: str = "built") -> Result:
    return Result(
        image="vault",
        variant="plain",
        version="2.0.0",
        action=action,
        reason="new",
        tags=("r.test/vault:2.0.0",),
        digest=digest,
        source_digest="sha256:" + "1" * 64,
        platforms=("linux/amd64",),
        attestations=attestations,
    )


def _outcome(digest: str, kind: str, statement: str, describes: str | None = None) -> AttestOutcome:
    return AttestOutcome(
        digest, kind, "sha256:fp", statement, True, describes, "sha256:env-" + statement[-4:]
    )


def test_each_attested_digest_records_its_statements(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.json"
    outcomes = (
        _outcome(INDEX, PROVENANCE, "sha256:p-index"),
        _outcome(INDEX, SBOM, "sha256:s-index", describes=AMD64),
        _outcome(AMD64, PROVENANCE, "sha256:p-amd64"),
        _outcome(AMD64, SBOM, "sha256:s-amd64"),
    )
    update_lock(lock, [_result(INDEX, outcomes)])
    written = json.loads(lock.read_text())["attestations"]
    assert written[INDEX] == {
        "statements": [
            {
                "predicateType": PROVENANCE,
                "statement": "sha256:p-index",
                "key": "sha256:fp",
                "envelope": "sha256:env-ndex",
            },
            {
                "predicateType": SBOM,
                "statement": "sha256:s-index",
                "key": "sha256:fp",
                "envelope": "sha256:env-ndex",
                "describes": AMD64,
            },
        ]
    }
    assert written[AMD64]["index"] == INDEX and len(written[AMD64]["statements"]) == 2
    # A run that leaves the entry as it was (skipped: no outcomes) keeps the records; one that attests a digest
    # again replaces that digest's; a new digest under the tags drops the old ones.
    update_lock(lock, [_result(INDEX, (), action="skipped")])
    assert json.loads(lock.read_text())["attestations"] == written
    update_lock(lock, [_result(INDEX, (_outcome(INDEX, PROVENANCE, "sha256:p-again"),))])
    again = json.loads(lock.read_text())["attestations"]
    assert [s["statement"] for s in again[INDEX]["statements"]] == ["sha256:p-again"]
    assert again[AMD64] == written[AMD64]
    update_lock(lock, [_result(OTHER, (_outcome(OTHER, PROVENANCE, "sha256:p-other"),))])
    assert list(json.loads(lock.read_text())["attestations"]) == [OTHER]


def test_keyless_records_name_the_identity_and_no_envelope(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.json"
    identity = "https://github.com/o/r/.github/workflows/ci-images.yml@refs/heads/main"
    keyless = AttestOutcome(INDEX, PROVENANCE, identity, "sha256:p", False, mode="keyless")
    update_lock(lock, [_result(INDEX, (keyless,))])
    assert json.loads(lock.read_text())["attestations"][INDEX]["statements"] == [
        {"predicateType": PROVENANCE, "statement": "sha256:p", "keyless": identity}
    ]
