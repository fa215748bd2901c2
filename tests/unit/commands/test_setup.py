"""The Setup a command resolves once: option, then environment, then catalog; the local registry; the lock file's
place; the entries and the tags a lock file may hold."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from ci_images.commands.images import refuse_narrowing
from ci_images.commands.options import BUILD, CHECK_PUBLIC, PUSH, TEST, parse_options
from ci_images.commands.setup import Destination, Mirror, Setup, prepare
from ci_images.errors import UsageError
from ci_images.plan.decide import Decision, TargetState

REPO_ROOT = Path(__file__).resolve().parents[3]
CATALOG = str(REPO_ROOT / "images.yaml")


def setup(given: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> Setup:
    with prepare(parse_options(PUSH, {"catalog": CATALOG, **(given or {})}, env or {})) as made:
        return made


def test_plain_http_mirror_only_for_loopback() -> None:
    assert setup(env={"CI_IMAGES_UPSTREAM_MIRROR": "http://127.0.0.1:5001"}).mirror == Mirror(
        "127.0.0.1:5001", plain_http=True
    )
    assert setup({"upstream_mirror": "https://127.0.0.1:5001"}).mirror == Mirror("127.0.0.1:5001")
    assert setup().mirror == Mirror(None)
    with pytest.raises(UsageError, match="plain HTTP is only allowed for loopback") as raised:
        parse_options(PUSH, {}, {"CI_IMAGES_UPSTREAM_MIRROR": "http://mirror.example.com"})
    assert raised.value.exit_code == 2
    assert "CI_IMAGES_UPSTREAM_MIRROR" in raised.value.message  # names where the bad value came from


def test_the_mirror_reaches_every_entry() -> None:
    made = setup({"upstream_mirror": "mirror.example.com"})
    assert {e.pull.host for e in made.entries} == {"mirror.example.com"}
    assert {e.source.host for e in made.entries} == {"docker.io"}


def test_target_precedence_option_then_environment_then_catalog() -> None:
    env = {"CI_IMAGES_REGISTRY": "registry.example.com/team"}
    assert setup().destination == Destination("ghcr.io/getsops/ci-container-images", plain_http=False)
    assert setup(env=env).destination.prefix == "registry.example.com/team"
    assert setup({"registry": "other.example.com/x"}, env).destination.prefix == "other.example.com/x"
    with pytest.raises(UsageError, match="plain HTTP is only allowed for loopback"):
        setup({"registry": "ghcr.io/x", "plain_http": True})


def test_no_target_anywhere_is_bad_input_but_a_listing_shows_the_embedded_registrys_tags(
    tmp_path: Path,
) -> None:
    catalog = tmp_path / "images.yaml"
    catalog.write_text(
        'images:\n  tool:\n    source: docker.io/acme/tool\n    versions: ["1.0.0"]\n', "utf-8"
    )
    options = parse_options(PUSH, {"catalog": str(catalog)}, {})
    with pytest.raises(UsageError, match="no target registry") as raised:
        prepare(options)
    assert raised.value.exit_code == 2
    with prepare(options, target_required=False) as listing:
        assert listing.entries[0].tag_refs[0] == "127.0.0.1:5000/ci-images/tool:1.0.0"


def test_local_registry_keeps_the_catalogs_path_and_takes_a_port() -> None:
    assert setup({"registry": "local"}).destination == Destination(
        "127.0.0.1:5000/getsops/ci-container-images", plain_http=True, local_port=5000
    )
    other = setup({"registry": "local:5057"}).destination
    assert other.prefix == "127.0.0.1:5057/getsops/ci-container-images"
    assert other.local_port == 5057
    with pytest.raises(UsageError, match="--registry 'local:x': no such port"):
        parse_options(PUSH, {"registry": "local:x"}, {})


def test_the_lock_file_may_hold_every_catalog_tag_on_the_target_whatever_the_run_chose() -> None:
    everything = setup().catalog_tags
    chosen = setup({"images": ["vault"], "platform": ["linux/amd64"]})
    assert chosen.catalog_tags == everything
    assert {e.image for e in chosen.entries} == {"vault"}
    assert {e.platforms for e in chosen.entries} == {("linux/amd64",)}
    assert "ghcr.io/getsops/ci-container-images/local-kms:3.11.1" in everything
    elsewhere = setup({"registry": "registry.example.com/team"}).catalog_tags
    assert "registry.example.com/team/local-kms:3.11.1" in elsewhere and not elsewhere & everything


def test_local_pushes_keep_their_lock_file_out_of_the_repository(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert setup(env=env).lock_path == REPO_ROOT / "images.lock.json"
    assert setup({"registry": "local"}, env).lock_path == (
        tmp_path / "ci-images" / "local-registry" / "5000" / "images.lock.json"
    )
    assert setup({"registry": "local:5057"}, env).lock_path == (
        tmp_path / "ci-images" / "local-registry" / "5057" / "images.lock.json"
    )
    assert setup({"lock": "x.json"}, env).lock_path == Path("x.json")


def test_a_push_to_another_registry_keeps_its_lock_file_out_of_the_repository(tmp_path: Path) -> None:
    """The lab's target from `invoke lab-up`, or a fork's: the repository's lock file describes the catalog's."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "CI_IMAGES_REGISTRY": "127.0.0.1:5999/lab/ci"}
    assert setup(env=env).lock_path == (
        tmp_path / "ci-images" / "locks" / "127.0.0.1_5999_lab_ci" / "images.lock.json"
    )
    assert setup({"registry": "ghcr.io/getsops/ci-container-images/"}, env).lock_path == (
        REPO_ROOT / "images.lock.json"
    )
    assert setup({"lock": "x.json"}, env).lock_path == Path("x.json")


def test_a_wrong_password_stops_before_the_catalog_is_read(tmp_path: Path) -> None:
    """The signer is made first: a bad key is exit 2, even when the catalog would be bad input too."""
    key = tmp_path / "cosign.key"
    key.write_text("not a key", encoding="utf-8")
    options = parse_options(
        PUSH, {"catalog": str(tmp_path / "missing.yaml")}, {"COSIGN_KEY": str(key), "COSIGN_PASSWORD": "x"}
    )
    with pytest.raises(UsageError, match="holds no PEM block"):
        prepare(options, with_signer=True)
    with pytest.raises(UsageError, match="not found"):
        prepare(options)


@pytest.mark.parametrize(
    ("catalog_platforms", "refused"),
    [("[linux/amd64, linux/arm64]", True), ("all", True), ("[linux/amd64]", False)],
)
def test_platform_may_not_publish_fewer_platforms_than_the_catalog_asks_for(
    tmp_path: Path, catalog_platforms: str, refused: bool
) -> None:
    """The target holds amd64 and arm64; a push with --platform linux/amd64 would write an amd64-only index. That is
    refused unless the catalog itself now asks for amd64 only (then fewer platforms is what it wants)."""
    path = tmp_path / "images.yaml"
    path.write_text(
        "registry: registry.example.com/team\nimages:\n  tool:\n    source: docker.io/acme/tool\n"
        f'    versions: ["1.0.0"]\n    platforms: {catalog_platforms}\n',
        encoding="utf-8",
    )
    with prepare(parse_options(PUSH, {"catalog": str(path), "platform": ["linux/amd64"]}, {})) as made:
        (entry,) = made.entries
    held = TargetState(digest="sha256:" + "1" * 64, platforms=("linux/amd64", "linux/arm64"))
    decision = Decision(entry, "mirror", "platforms changed", "sha256:" + "2" * 64, None, held)
    if not refused:
        refuse_narrowing(made, [decision])
        return
    with pytest.raises(UsageError) as caught:
        refuse_narrowing(made, [decision])
    assert caught.value.exit_code == 2
    assert "registry.example.com/team/tool:1.0.0 (would lose linux/arm64)" in caught.value.message


@pytest.mark.parametrize("command", [BUILD, TEST])
def test_build_and_test_tag_under_the_target_every_command_names(command: str) -> None:
    """After `eval "$(invoke lab-up)"` (CI_IMAGES_REGISTRY set), the host's build is tagged under that target, as
    a push would name it, not under the catalog's registry."""
    env = {"CI_IMAGES_REGISTRY": "127.0.0.1:5999/lab/ci"}
    options = parse_options(command, {"catalog": CATALOG, "images": ["vault:2.0.0"]}, env)
    with prepare(options, target_required=False) as made:
        (entry,) = made.entries
    assert entry.tag_refs[0] == "127.0.0.1:5999/lab/ci/vault:2.0.0"
    with prepare(
        parse_options(command, {"catalog": CATALOG, "registry": "local"}, env), target_required=False
    ) as made:
        assert made.entries[0].tag_refs[0].startswith("127.0.0.1:5000/getsops/ci-container-images/")


def test_the_anonymous_pool_never_sends_credentials_where_the_target_pool_does() -> None:
    """What `check-public` reads with: no credentials from the environment (nor docker's login), on the target's
    transport (plain HTTP only where the target speaks it)."""
    env = {"CI_IMAGES_REGISTRY_USER": "someone", "CI_IMAGES_REGISTRY_PASSWORD": "pw-anonymous-pool"}
    with prepare(parse_options(CHECK_PUBLIC, {"catalog": CATALOG}, env)) as made:
        host = made.destination.host
        assert made.target_pool.get(host).credentials is not None
        assert made.anonymous_pool.get(host).credentials is None
    with prepare(parse_options(CHECK_PUBLIC, {"catalog": CATALOG, "registry": "local:5999"}, {})) as local:
        assert local.anonymous_pool.get(local.destination.host).plain_http


def test_platform_manifests_are_signed_and_everything_attested_by_default() -> None:
    """--recursive is the default now; --index-only (or CI_IMAGES_SIGN_RECURSIVE=0) turns it off, --no-attest the
    attestations; the run records where the catalog is and when the command started (a provenance says both)."""
    made = setup()
    settings = made.run_settings(publish=True)
    assert settings.sign_recursive and settings.attest
    assert settings.catalog_file == Path(CATALOG)
    assert settings.started_on == made.started_on and made.started_on.endswith("Z")
    assert not setup({"index_only": True}).run_settings(publish=True).sign_recursive
    assert not setup(env={"CI_IMAGES_SIGN_RECURSIVE": "0"}).run_settings(publish=True).sign_recursive
    assert not setup(env={"CI_IMAGES_SIGN_INDEX_ONLY": "1"}).run_settings(publish=True).sign_recursive
    assert not setup({"no_attest": True}).run_settings(publish=True).attest
    with pytest.raises(UsageError, match="--recursive and --index-only cannot be used together"):
        parse_options(PUSH, {"recursive": True, "index_only": True}, {})
