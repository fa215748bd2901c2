"""What the attestation tests share: a repository, digests and the inputs of a provenance predicate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ci_images.catalog.refs import Repository
from ci_images.sign import provenance

REPOSITORY = Repository("ghcr.io", "getsops/ci-container-images/vault")
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
UPSTREAM = "sha256:" + "11" * 32
BASES = {"linux/amd64": "sha256:" + "22" * 32, "linux/arm64": "sha256:" + "33" * 32}

ENTRY = provenance.EntryParameters(
    catalog="images.yaml",
    image="vault",
    variant="default",
    version="2.0.0",
    source="docker.io/hashicorp/vault",
    platforms=("linux/amd64", "linux/arm64"),
    tags=("ghcr.io/getsops/ci-container-images/vault:2.0.0", "ghcr.io/getsops/ci-container-images/vault:2.0"),
    build_args={"B": "2", "A": "1"},
)
CHECKOUT = provenance.Checkout("https://github.com/getsops/ci-container-images", "c" * 40)
RUN = provenance.Run(
    "https://github.com/getsops/ci-container-images/.github/workflows/publish.yml@refs/heads/main",
    "https://github.com/getsops/ci-container-images/actions/runs/1/attempts/1",
    "2026-01-02T03:04:05Z",
    "2026-01-02T03:09:05Z",
)
RECIPE = provenance.Recipe(
    "images/vault/Dockerfile", "sha256:" + "44" * 32, "images/vault", "55" * 32, "sha256:" + "66" * 32
)


def build_predicate(bases: Mapping[str, str] = BASES, upstream: str = UPSTREAM) -> dict[str, Any]:
    return provenance.build_predicate(ENTRY, provenance.Upstream(upstream, bases), RECIPE, CHECKOUT, RUN)


def mirror_predicate() -> dict[str, Any]:
    return provenance.mirror_predicate(ENTRY, provenance.Upstream(UPSTREAM, BASES), CHECKOUT, RUN)
