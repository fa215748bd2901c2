"""Settings resolution of the commands: option, then environment, then catalog; local registry; lock file location."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_images import wiring
from ci_images.catalog.load import load_catalog
from ci_images.errors import UsageError
from ci_images.options import PUSH, parse
from ci_images.smoke import KINDS

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS)


def test_plain_http_mirror_only_for_loopback() -> None:
    plain = parse(PUSH, {}, {"CI_IMAGES_UPSTREAM_MIRROR": "http://127.0.0.1:5001"})
    assert wiring.upstream_mirror(plain, CATALOG) == ("127.0.0.1:5001", True)
    tls = parse(PUSH, {"upstream_mirror": "https://127.0.0.1:5001"}, {})
    assert wiring.upstream_mirror(tls, CATALOG) == ("127.0.0.1:5001", False)
    assert wiring.upstream_mirror(parse(PUSH, {}, {}), CATALOG) == (None, False)
    with pytest.raises(UsageError, match="plain HTTP is only allowed for loopback") as raised:
        parse(PUSH, {}, {"CI_IMAGES_UPSTREAM_MIRROR": "http://mirror.example.com"})
    assert raised.value.exit_code == 2
    assert "CI_IMAGES_UPSTREAM_MIRROR" in raised.value.message  # names where the bad value came from


def test_target_precedence_option_then_environment_then_catalog() -> None:
    env = {"CI_IMAGES_REGISTRY": "registry.example.com/team"}
    assert wiring.target(parse(PUSH, {}, {}), CATALOG, start_local=False) == wiring.Target(
        "ghcr.io/getsops/ci-container-images", plain_http=False
    )
    assert (
        wiring.target(parse(PUSH, {}, env), CATALOG, start_local=False).prefix == "registry.example.com/team"
    )
    chosen = parse(PUSH, {"registry": "other.example.com/x"}, env)
    assert wiring.target(chosen, CATALOG, start_local=False).prefix == "other.example.com/x"
    with pytest.raises(UsageError, match="plain HTTP is only allowed for loopback"):
        wiring.target(
            parse(PUSH, {"registry": "ghcr.io/x", "plain_http": True}, {}), CATALOG, start_local=False
        )


def test_local_registry_keeps_the_catalogs_path_and_takes_a_port() -> None:
    local = wiring.target(parse(PUSH, {"registry": "local"}, {}), CATALOG, start_local=False)
    assert local == wiring.Target(
        "127.0.0.1:5000/getsops/ci-container-images", plain_http=True, local_port=5000
    )
    other = wiring.target(parse(PUSH, {"registry": "local:5057"}, {}), CATALOG, start_local=False)
    assert other.prefix == "127.0.0.1:5057/getsops/ci-container-images"
    assert other.local_port == 5057
    with pytest.raises(UsageError, match="--registry 'local:x': no such port"):
        parse(PUSH, {"registry": "local:x"}, {})


def test_the_lock_file_may_hold_every_catalog_tag_on_the_target_whatever_the_run_chose() -> None:
    everything = wiring.catalog_tags(parse(PUSH, {}, {}), CATALOG)
    chosen = parse(PUSH, {"images": ["vault"], "platform": ["linux/amd64"]}, {})
    assert wiring.catalog_tags(chosen, CATALOG) == everything
    assert "ghcr.io/getsops/ci-container-images/local-kms:3.11.1" in everything
    elsewhere = wiring.catalog_tags(parse(PUSH, {"registry": "registry.example.com/team"}, {}), CATALOG)
    assert "registry.example.com/team/local-kms:3.11.1" in elsewhere and not elsewhere & everything


def test_local_pushes_keep_their_lock_file_out_of_the_repository(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert wiring.lock_file(parse(PUSH, {}, env), CATALOG) == REPO_ROOT / "images.lock.json"
    assert wiring.lock_file(parse(PUSH, {"registry": "local"}, env), CATALOG) == (
        tmp_path / "ci-images" / "local-registry" / "5000" / "images.lock.json"
    )
    assert wiring.lock_file(parse(PUSH, {"registry": "local:5057"}, env), CATALOG) == (
        tmp_path / "ci-images" / "local-registry" / "5057" / "images.lock.json"
    )
    assert wiring.lock_file(parse(PUSH, {"lock": "x.json"}, env), CATALOG) == Path("x.json")


def test_a_push_to_another_registry_keeps_its_lock_file_out_of_the_repository(tmp_path: Path) -> None:
    """The lab's target from `invoke lab-up`, or a fork's: the repository's lock file describes the catalog's."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "CI_IMAGES_REGISTRY": "127.0.0.1:5999/lab/ci"}
    assert wiring.lock_file(parse(PUSH, {}, env), CATALOG) == (
        tmp_path / "ci-images" / "locks" / "127.0.0.1_5999_lab_ci" / "images.lock.json"
    )
    same = parse(PUSH, {"registry": "ghcr.io/getsops/ci-container-images/"}, env)
    assert wiring.lock_file(same, CATALOG) == REPO_ROOT / "images.lock.json"
    given = parse(PUSH, {"lock": "x.json"}, env)
    assert wiring.lock_file(given, CATALOG) == Path("x.json")
