"""Image references: Docker Hub naming, hosts with ports, upstream-mirror rewriting."""

from __future__ import annotations

import pytest

from ci_images.catalog.refs import (
    Repository,
    apply_mirror,
    is_valid_host,
    is_valid_tag,
    normalize_mirror,
    parse_repository,
)


@pytest.mark.parametrize(
    ("name", "host", "path", "api_host"),
    [
        ("vault", "docker.io", "library/vault", "registry-1.docker.io"),
        ("docker.io/vault", "docker.io", "library/vault", "registry-1.docker.io"),
        ("docker.io/library/vault", "docker.io", "library/vault", "registry-1.docker.io"),
        ("hashicorp/vault", "docker.io", "hashicorp/vault", "registry-1.docker.io"),
        ("docker.io/hashicorp/vault", "docker.io", "hashicorp/vault", "registry-1.docker.io"),
        ("index.docker.io/nsmithuk/local-kms", "docker.io", "nsmithuk/local-kms", "registry-1.docker.io"),
        ("registry-1.docker.io/alpine", "docker.io", "library/alpine", "registry-1.docker.io"),
        (
            "ghcr.io/getsops/ci-container-images/vault",
            "ghcr.io",
            "getsops/ci-container-images/vault",
            "ghcr.io",
        ),
        ("127.0.0.1:5000/ci-images/vault", "127.0.0.1:5000", "ci-images/vault", "127.0.0.1:5000"),
        ("localhost:5000/a/b", "localhost:5000", "a/b", "localhost:5000"),
        ("localhost/a", "localhost", "a", "localhost"),
        ("[::1]:5000/a", "[::1]:5000", "a", "[::1]:5000"),
        ("my-registry:5000/a__b/c--d", "my-registry:5000", "a__b/c--d", "my-registry:5000"),
        ("quay.io/a.b/c_d", "quay.io", "a.b/c_d", "quay.io"),
    ],
)
def test_parse_repository(name: str, host: str, path: str, api_host: str) -> None:
    repo = parse_repository(name)
    assert repo == Repository(host, path)
    assert repo.api_host == api_host
    assert repo.is_docker_hub is (host == "docker.io")
    assert str(repo) == f"{host}/{path}"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (" vault", "empty"),
        ("vault:1.0", "must not carry a tag"),
        ("ghcr.io/a/b:latest", "must not carry a tag"),
        ("vault@sha256:" + "a" * 64, "must not carry a digest"),
        ("Vault", "invalid repository path"),
        ("docker.io/HashiCorp/vault", "invalid repository path"),
        ("ghcr.io/", "invalid repository path"),
        ("a//b", "invalid repository path"),
        ("a/-b", "invalid repository path"),
        ("a/b.", "invalid repository path"),
        ("ex_ample.com/a", "invalid registry host"),
        ("host:99999/a", "invalid registry host"),
        ("host:0/a", "invalid registry host"),
    ],
)
def test_parse_repository_rejects(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_repository(name)


def test_references() -> None:
    repo = parse_repository("127.0.0.1:5000/ci/vault")
    assert repo.with_tag("1.14") == "127.0.0.1:5000/ci/vault:1.14"
    digest = "sha256:" + "0" * 64
    assert repo.with_digest(digest) == f"127.0.0.1:5000/ci/vault@{digest}"


@pytest.mark.parametrize(
    ("source", "mirror", "expected"),
    [
        ("docker.io/hashicorp/vault", "mirror.test:5000", "mirror.test:5000/hashicorp/vault"),
        ("docker.io/vault", "mirror.test:5000", "mirror.test:5000/library/vault"),
        ("vault", "127.0.0.1:5001", "127.0.0.1:5001/library/vault"),
        ("index.docker.io/nsmithuk/local-kms", "m.test", "m.test/nsmithuk/local-kms"),
        ("ghcr.io/acme/tool", "mirror.test:5000", "ghcr.io/acme/tool"),
        ("quay.io/acme/tool", "mirror.test:5000", "quay.io/acme/tool"),
        ("docker.io/hashicorp/vault", None, "docker.io/hashicorp/vault"),
        ("docker.io/hashicorp/vault", "", "docker.io/hashicorp/vault"),
    ],
)
def test_apply_mirror(source: str, mirror: str | None, expected: str) -> None:
    repo = apply_mirror(parse_repository(source), mirror)
    assert str(repo) == expected
    if mirror and repo.host == mirror:
        assert repo.api_host == mirror  # requests go to the mirror, not to registry-1.docker.io
        assert not repo.is_docker_hub


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mirror.gcr.io", "mirror.gcr.io"),
        ("https://mirror.gcr.io/", "mirror.gcr.io"),
        ("http://127.0.0.1:5001", "127.0.0.1:5001"),
        ("  mirror.test:5000/ ", "mirror.test:5000"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_normalize_mirror(value: str, expected: str) -> None:
    assert normalize_mirror(value) == expected


@pytest.mark.parametrize(
    "value", ["", "   ", "https://", "mirror.test/v2", "a b", "mirror.test:", "mirror.test:70000", "ftp://m"]
)
def test_normalize_mirror_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"is not host\[:port\]"):
        normalize_mirror(value)


def test_validators() -> None:
    assert is_valid_tag("3.11.7-seeded")
    assert is_valid_tag("_x")
    assert not is_valid_tag(".x")
    assert not is_valid_tag("-x")
    assert not is_valid_tag("a" * 129)
    assert is_valid_tag("a" * 128)
    assert is_valid_host("ghcr.io")
    assert is_valid_host("127.0.0.1:65535")
    assert not is_valid_host("127.0.0.1:65536")
    assert not is_valid_host("-bad.io")
