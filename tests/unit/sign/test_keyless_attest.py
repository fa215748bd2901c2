"""Keyless attestations: cosign's command lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_images.errors import UsageError
from ci_images.sign import keyless_attest
from ci_images.sign import statement as statements
from tests.unit.sign.attestation_inputs import DIGEST


def test_keyless_attest_command_lines(tmp_path: Path) -> None:
    image = f"ghcr.io/o/r@{DIGEST}"
    with keyless_attest.predicate_file({"a": 1}) as path:
        assert json.loads(path.read_text()) == {"a": 1}
        assert keyless_attest.attest_argv(image, path, statements.SLSA_PROVENANCE_V1) == [
            "cosign", "attest", "--yes", "--type", "slsaprovenance1", "--predicate", str(path), image,
        ]  # fmt: skip
    assert not path.exists()
    assert keyless_attest.verify_attestation_argv(image, statements.SPDX_DOCUMENT, "^x") == [
        "cosign", "verify-attestation", "--type", "spdxjson", "--certificate-identity-regexp", "^x",
        "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com", image,
    ]  # fmt: skip
    assert keyless_attest.verify_attestation_key_argv(image, statements.SLSA_PROVENANCE_V1, "cosign.pub") == [
        "cosign", "verify-attestation", "--key", "cosign.pub", "--type", "slsaprovenance1",
        "--insecure-ignore-tlog", image,
    ]  # fmt: skip
    with pytest.raises(UsageError, match="by tag"):
        keyless_attest.attest_argv("ghcr.io/o/r:1", tmp_path, statements.SPDX_DOCUMENT)
