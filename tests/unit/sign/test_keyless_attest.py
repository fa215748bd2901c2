"""Keyless attestations through cosign: the exact command lines, what is read from `cosign verify-attestation`'s
output, and the orchestration around it (verify first, attest what is missing, verify again), with a stand-in
`cosign` on PATH. That tests our side of the call: cosign itself cannot run offline (Fulcio, Rekor, the OIDC token)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ci_images.errors import SigningError, UsageError
from ci_images.registry.client import RegistryClient
from ci_images.sign import attest, dsse, keyless, keyless_attest, keys
from ci_images.sign import statement as statements
from ci_images.sign.attest_verify import WRONG_BASE
from tests.unit.sign.attestation_inputs import DIGEST, OTHER_DIGEST, REPOSITORY, UPSTREAM, build_predicate

IMAGE = f"{REPOSITORY}@{DIGEST}"
FLAGS = keyless.publishing_policy("getsops/ci-container-images").flags()
IDENTITY = "https://github.com/getsops/ci-container-images/.github/workflows/ci-images.yml@refs/heads/main"


def test_keyless_attest_command_lines(tmp_path: Path) -> None:
    with keyless_attest.predicate_file({"a": 1}) as path:
        assert json.loads(path.read_text()) == {"a": 1}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert keyless_attest.attest_argv(IMAGE, path, statements.SLSA_PROVENANCE_V1) == [
            "cosign", "attest", "--yes", "--type", "slsaprovenance1", "--predicate", str(path), IMAGE,
        ]  # fmt: skip
    assert not path.exists()
    assert keyless_attest.verify_attestation_argv(IMAGE, statements.SPDX_DOCUMENT, FLAGS) == [
        "cosign", "verify-attestation", "--type", "spdxjson", "--certificate-identity", IDENTITY,
        "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com", IMAGE,
    ]  # fmt: skip
    assert keyless_attest.verify_attestation_key_argv(IMAGE, statements.SLSA_PROVENANCE_V1, "cosign.pub") == [
        "cosign", "verify-attestation", "--key", "cosign.pub", "--type", "slsaprovenance1",
        "--insecure-ignore-tlog", IMAGE,
    ]  # fmt: skip
    with pytest.raises(UsageError, match="by tag"):
        keyless_attest.attest_argv(f"{REPOSITORY}:1", tmp_path, statements.SPDX_DOCUMENT)


def _envelope_line(predicate_type: str, predicate: dict[str, Any], digest: str = DIGEST) -> str:
    """A line as `cosign verify-attestation` prints it: the verified DSSE envelope (signed here by a throwaway key:
    cosign has checked the signature before it prints)."""
    body = attest.statement_bytes(REPOSITORY, digest, predicate_type, predicate)
    return dsse.sign(keys.SigningKey(keys.generate_private_key()), body).to_json().decode()


def _spdx(scanned: str) -> dict[str, Any]:
    """The parts of syft's SPDX document that say which manifest it read."""
    return {
        "spdxVersion": "SPDX-2.3",
        "packages": [
            {
                "SPDXID": "SPDXRef-DocumentRoot-Image-r",
                "checksums": [{"algorithm": "SHA256", "checksumValue": scanned.removeprefix("sha256:")}],
            }
        ],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relatedSpdxElement": "SPDXRef-DocumentRoot-Image-r",
                "relationshipType": "DESCRIBES",
            }
        ],
    }


def test_what_is_read_from_verify_attestation_output() -> None:
    line = _envelope_line(statements.SPDX_DOCUMENT, _spdx(OTHER_DIGEST))
    output = f"Verification for {IMAGE} --\nCertificate subject: {IDENTITY}\n{line}\n"
    [claim] = keyless_attest.verified_statements(output)
    assert claim.names_digest(DIGEST) and claim.predicate_type == statements.SPDX_DOCUMENT
    assert keyless_attest.certificate_subject(output) == IDENTITY
    assert keyless_attest.verified_statements("Error: no matching attestations\n") == []


def _fake_cosign(folder: Path) -> Path:
    """`cosign` that records its argv, "attests" by keeping the predicate beside a counter, and "verifies" by
    printing the envelope lines the test left in ``folder/verified`` (nothing there: exit 1, as cosign does)."""
    script = folder / "cosign"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {folder}/calls\n'
        'if [ "$1" = attest ]; then\n'
        '  while [ "$#" -gt 0 ]; do [ "$1" = --predicate ] && cp "$2" '
        f'{folder}/predicate-$(wc -l < {folder}/calls | tr -d " "); shift; done\n'
        "  exit 0\n"
        "fi\n"
        f'if [ -s {folder}/verified ]; then echo "Certificate subject: {IDENTITY}" >&2; cat {folder}/verified; exit 0; fi\n'
        'echo "Error: no matching attestations: none verified" >&2; exit 1\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def _attester(folder: Path) -> keyless_attest.KeylessAttester:
    env = {"PATH": f"{folder}:{os.environ['PATH']}"}
    return keyless_attest.KeylessAttester(env, identity=IDENTITY, identity_flags=FLAGS)


def _calls(folder: Path) -> list[str]:
    return [line.split()[0] for line in (folder / "calls").read_text().splitlines()]


def test_keyless_attester_attests_what_is_missing_and_checks_it(tmp_path: Path) -> None:
    _fake_cosign(tmp_path)
    attester = _attester(tmp_path)
    client = RegistryClient("ghcr.io")
    made: list[int] = []

    def predicate() -> dict[str, Any]:
        made.append(1)
        return build_predicate()

    wanted = attest.Wanted(DIGEST, statements.SLSA_PROVENANCE_V1, predicate)
    # cosign "writes" it; the stand-in then verifies what the test leaves in place of the registry.
    (tmp_path / "verified").write_text("")
    with pytest.raises(SigningError, match="does not verify"):
        attester.attest(client, REPOSITORY, wanted)
    assert _calls(tmp_path) == ["verify-attestation", "attest", "verify-attestation"]
    predicate_file = next(tmp_path.glob("predicate-*"))
    assert json.loads(predicate_file.read_text()) == build_predicate()
    (tmp_path / "verified").write_text(
        _envelope_line(statements.SLSA_PROVENANCE_V1, build_predicate()) + "\n"
    )
    again = attester.attest(client, REPOSITORY, wanted)
    assert not again.written and again.mode == "keyless" and again.signer == IDENTITY
    assert again.statement.startswith("sha256:")
    assert _calls(tmp_path)[3:] == ["verify-attestation"]  # there already: no attest, no predicate made
    assert made == [1]


def test_an_index_sbom_is_recognised_by_the_manifest_syft_read(tmp_path: Path) -> None:
    """cosign attest writes no annotation: an index's SBOM of one platform is known by its document's root, the
    platform manifest or one with the same files."""
    _fake_cosign(tmp_path)
    attester = _attester(tmp_path)
    amd64, twin, arm64 = ("sha256:" + c * 64 for c in "123")
    (tmp_path / "verified").write_text(_envelope_line(statements.SPDX_DOCUMENT, _spdx(twin)) + "\n")
    client = RegistryClient("ghcr.io")

    def unused() -> dict[str, Any]:
        raise AssertionError("made although the attestation is there")

    there = attest.Wanted(DIGEST, statements.SPDX_DOCUMENT, unused, amd64, frozenset({amd64, twin}))
    found = attester.attest(client, REPOSITORY, there)
    assert not found.written and found.describes == twin
    missing = attest.Wanted(DIGEST, statements.SPDX_DOCUMENT, lambda: _spdx(arm64), arm64, frozenset({arm64}))
    with pytest.raises(SigningError):  # attested, then still not found by the stand-in
        attester.attest(client, REPOSITORY, missing)
    assert "attest" in _calls(tmp_path)


def test_keyless_verification_checks_the_base_in_what_cosign_verified(tmp_path: Path) -> None:
    _fake_cosign(tmp_path)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    checker = keyless_attest.KeylessAttestationVerifier(env, identity=IDENTITY, identity_flags=FLAGS)
    client = RegistryClient("ghcr.io")
    missing = checker.check(client, REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1)
    assert missing.problem == "attestation-missing" and "no matching attestations" in missing.message
    (tmp_path / "verified").write_text(
        _envelope_line(statements.SLSA_PROVENANCE_V1, build_predicate()) + "\n"
    )
    good = checker.check(
        client, REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1, expected_upstream=UPSTREAM
    )
    assert good.ok and good.upstream == UPSTREAM and good.signer == IDENTITY
    other = "sha256:" + "88" * 32
    wrong = checker.check(client, REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1, expected_upstream=other)
    assert wrong.problem == WRONG_BASE and UPSTREAM in wrong.message and other in wrong.message
    [observed] = checker.observe(client, REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1)
    assert observed.lock_record() == {
        "predicateType": statements.SLSA_PROVENANCE_V1,
        "statement": good.statement,
        "keyless": IDENTITY,
    }
