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


@pytest.mark.parametrize(
    ("catalog_platforms", "refused"),
    [("[linux/amd64, linux/arm64]", True), ("all", True), ("[linux/amd64]", False)],
)
def test_platform_may_not_publish_fewer_platforms_than_the_catalog_asks_for(
    tmp_path: Path, catalog_platforms: str, refused: bool
) -> None:
    """The target holds amd64 and arm64; a push with --platform linux/amd64 would write an amd64-only index. That is
    refused unless the catalog itself now asks for amd64 only (then fewer platforms is what it wants)."""
    from ci_images import app
    from ci_images.plan.decide import Decision, TargetState

    path = tmp_path / "images.yaml"
    path.write_text(
        "registry: registry.example.com/team\nimages:\n  tool:\n    source: docker.io/acme/tool\n"
        f'    versions: ["1.0.0"]\n    platforms: {catalog_platforms}\n',
        encoding="utf-8",
    )
    catalog = load_catalog(path, smoke_kinds=KINDS)
    options = parse(PUSH, {"catalog": str(path), "platform": ["linux/amd64"]}, {})
    (entry,) = wiring.entries_for(options, catalog, prefix="registry.example.com/team")
    held = TargetState(digest="sha256:" + "1" * 64, platforms=("linux/amd64", "linux/arm64"))
    decision = Decision(entry, "mirror", "platforms changed", "sha256:" + "2" * 64, None, held)
    if not refused:
        app.refuse_narrowing(options, catalog, [decision])
        return
    with pytest.raises(UsageError) as caught:
        app.refuse_narrowing(options, catalog, [decision])
    assert caught.value.exit_code == 2
    assert "registry.example.com/team/tool:1.0.0 (would lose linux/arm64)" in caught.value.message
