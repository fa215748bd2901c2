"""Keyless attestations through the cosign CLI (GitHub Actions' OIDC identity), beside ``keyless`` for signatures.

``cosign attest --predicate FILE --type T`` makes the statement itself (cmd/cosign/cli/attest/attest.go: subject the
repository and digest, ``_type`` v0.1) from the predicate we build; cosign v3 stores it as a Sigstore bundle (an
OCI referrer, or the ``sha256-<hex>`` fallback tag where the registry has no referrers API, as GHCR), which its
``verify-attestation`` finds first (cmd/cosign/cli/verify/verify_attestation.go falls back to ``.att`` only when no
bundle exists). The predicate goes through a private temporary file: it is no secret, but it can be megabytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ci_images.errors import UsageError
from ci_images.sign.keyless import COSIGN, GITHUB_ISSUER
from ci_images.sign.statement import COSIGN_TYPES


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


def verify_attestation_argv(
    image: str, predicate_type: str, regexp: str, issuer: str = GITHUB_ISSUER
) -> list[str]:
    """``cosign verify-attestation`` of a keyless attestation by a workflow matching ``regexp``."""
    return [
        COSIGN,
        "verify-attestation",
        "--type",
        cosign_type(predicate_type),
        "--certificate-identity-regexp",
        regexp,
        "--certificate-oidc-issuer",
        issuer,
        image,
    ]


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
