"""Shared fixtures of the integration tests: the engine guard, the image lab and the host-platform stand-ins.

The lab is session-scoped: one CA, one upstream registry holding every stand-in the tests need (multi-arch, under
the real names), one target registry with htpasswd auth. Stand-ins and a filled upstream store are cached (see
ci_images.lab), so only the first run on a machine builds anything. A registry behind a token service, as Docker
Hub and GHCR authenticate, is module-scoped (``token_registry``, ``token_service``).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_images.engine.client import Engine
from ci_images.engine.dockerd import engine_answers
from ci_images.lab.lab import Lab, ensure_standin, lab_down, lab_up
from ci_images.lab.token_registry import TokenRegistry, start_token_registry
from ci_images.lab.tokens import Account, Level, TokenService
from ci_images.loopback.certs import CertificateAuthority
from ci_images.loopback.server import RegistryServer, start_registry
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every upstream version images.yaml names (the tests may publish any of them), the lab's demo service, plus
# local-kms 3.11.0: upstream pushed it as one amd64 image (its workflow: `docker build` + `docker push`, no buildx),
# so the lab does too and the catalog's per-version platforms are exercised against a real single-platform manifest.
LAB_STANDINS: dict[str, list[str]] = {
    "nsmithuk/local-kms": ["3.11.0", "3.11.1", "3.11.7", "3.12.0"],
    "hashicorp/vault": ["1.14.10", "1.21.4", "2.0.0"],
    "library/vault": ["1.10.0"],
    # The demo service (busybox httpd): an image ci-images has no probe module for, smoke-tested by declared probes.
    "cilab/demo-service": ["1.0.0"],
}
LAB_PLATFORMS = ["linux/amd64", "linux/arm64"]
LAB_NARROWED: dict[str, list[str]] = {"nsmithuk/local-kms:3.11.0": ["linux/amd64"]}
# The versions standin_images hands out: vault 2.x, so images/vault's SKIP_SETCAP fix is really exercised.
STANDIN_VERSIONS = {"nsmithuk/local-kms": "3.11.7", "hashicorp/vault": "2.0.0"}


def unavailable(reason: str) -> None:
    """In CI a missing prerequisite is a failure, never a silent skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine_available() -> None:
    if not engine_answers():
        unavailable(
            "no Docker engine answers (start one: `dockerd --bridge=none --iptables=false &` as root, "
            "Docker Desktop, or DOCKER_HOST)"
        )


@pytest.fixture(scope="session")
def lab_engine(engine_available: None) -> Engine:
    return Engine.connect()


@pytest.fixture(scope="session")
def engine(lab_engine: Engine) -> Engine:
    """The engine the tests build and run on (fails under CI=true, skips elsewhere, when none answers)."""
    return lab_engine


@pytest.fixture(scope="session")
def lab(lab_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for tool in ("docker-registry", "htpasswd"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install docker-registry apache2-utils)")
    workdir = tmp_path_factory.mktemp("lab")
    try:
        yield lab_up(
            workdir, standins=LAB_STANDINS, platforms=LAB_PLATFORMS, narrowed=LAB_NARROWED, engine=lab_engine
        )
    finally:
        lab_down(workdir)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A throwaway TLS registry with htpasswd auth (no stand-ins): for registry-client and OCI tests."""
    if shutil.which("docker-registry") is None:
        unavailable("Debian's docker-registry is not installed")
    workdir = tmp_path_factory.mktemp("registry")
    ca = CertificateAuthority.create(workdir / "ca")
    server = start_registry(workdir / "server", ca=ca, htpasswd=("ci-user", "pw-" + secrets.token_hex(8)))
    yield server
    server.stop()


# The token registry's accounts: the writer publishes under getsops/ and may read the upstream names; the reader may
# only read getsops/ (a read-only namespace); nobody is granted anything anonymously.
TOKEN_WRITER, TOKEN_READER = "ci-writer", "ci-reader"


@pytest.fixture(scope="module")
def token_registry_accounts() -> dict[str, Account]:
    """The accounts of the module's token registry; a module overrides this fixture for others."""
    return {
        TOKEN_WRITER: Account(
            "pw-" + secrets.token_hex(8),
            {"getsops": Level.DELETE, "nsmithuk": Level.READ, "hashicorp": Level.READ},
        ),
        TOKEN_READER: Account("pw-" + secrets.token_hex(8), {"getsops": Level.READ}),
    }


@pytest.fixture(scope="module")
def token_registry(
    token_registry_accounts: dict[str, Account], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenRegistry]:
    """A TLS registry with ``auth: token`` on 127.0.0.1:PORT, its token service on https://localhost:PORT2/token (a
    realm on another host), one lab CA for both; the engine trusts the CA for the registry's host (certs.d) only."""
    if shutil.which("docker-registry") is None:
        unavailable("Debian's docker-registry is not installed")
    started = start_token_registry(
        tmp_path_factory.mktemp("token-registry"), accounts=token_registry_accounts
    )
    yield started
    started.stop()


@pytest.fixture
def token_service(token_registry: TokenRegistry) -> Iterator[TokenService]:
    """The token registry's service for one test: Docker Hub's answers, 60 s tokens, no fault, an empty log; the
    test may change style, lifetime or fault, and they are put back afterwards."""
    token_registry.tokens.reset()
    yield token_registry.tokens
    token_registry.tokens.reset()


@pytest.fixture(scope="session")
def standin_images(lab_engine: Engine) -> dict[str, str]:
    """Local engine references of the stand-ins for the host platform: {"nsmithuk/local-kms": ref, ...}."""
    platform = lab_engine.host_platform()
    return {
        repo: ensure_standin(lab_engine, repo, version, platform)
        for repo, version in STANDIN_VERSIONS.items()
    }


# The smallest real entry: vault, one version, one native platform. For tests about the pipeline itself (faults,
# interrupts, signing), where one quick build, smoke test and push is enough.
VAULT_ONLY = """\
platforms: [linux/amd64]
images:
  vault:
    source: docker.io/hashicorp/vault
    versions: ["2.0.0"]
    build: images/vault
    smoke: vault
"""


def target_client(lab: Any) -> RegistryClient:
    """A client of the lab's target registry with its credentials, for reading back what a run published."""
    return RegistryClient(lab.target.host, credentials=Credentials(lab.target.username, lab.target.password))


def vault_catalog(root: Path, header: str = "") -> Path:
    """A catalog of VAULT_ONLY in ``root`` (with ``header`` lines first), next to a copy of images/vault."""
    shutil.copytree(REPO_ROOT / "images" / "vault", root / "images" / "vault", dirs_exist_ok=True)
    path = root / "images.yaml"
    path.write_text(header + VAULT_ONLY, encoding="utf-8")
    return path
