"""Smoke probes against real servers: the repo's images/ built on the lab's stand-ins, and images that must fail."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_images.engine.client import CONTAINER_LABEL, Engine
from ci_images.errors import CiImagesError, SmokeError
from ci_images.lab import assets as lab_assets
from ci_images.smoke.probe import smoke_test
from tests.integration.conftest import unavailable

pytestmark = pytest.mark.integration

IMAGES = Path(__file__).resolve().parents[2] / "images"
SEEDED_BUILD_ARGS = {"KMS_SEED": "sops-test"}


@pytest.fixture(scope="module")
def built_images(engine: Engine, standin_images: dict[str, str]) -> Iterator[dict[str, str]]:
    """images/local-kms (plain and seeded) and images/vault built on the host-platform stand-ins."""
    platform = engine.host_platform()
    suffix = secrets.token_hex(4)
    recipes = {
        "kms": ("local-kms", "nsmithuk/local-kms", {}),
        "kms-seeded": ("local-kms", "nsmithuk/local-kms", SEEDED_BUILD_ARGS),
        "vault": ("vault", "hashicorp/vault", {}),
    }
    built: dict[str, str] = {}
    try:
        for name, (folder, upstream, build_args) in recipes.items():
            tag = f"ci-images-smoke-test-{name}:{suffix}"
            engine.build(
                IMAGES / folder,
                tag=tag,
                platform=platform,
                buildargs={"BASE_IMAGE": standin_images[upstream], **build_args},
                labels={"org.opencontainers.image.title": f"smoke-test-{name}"},
            )
            built[name] = tag
        yield built
    finally:
        for tag in built.values():
            engine.remove_image(tag)


@pytest.mark.parametrize(("kind", "image"), [("kms", "kms"), ("kms", "kms-seeded"), ("vault", "vault")])
def test_repo_images_pass_their_smoke_test(
    engine: Engine, built_images: dict[str, str], kind: str, image: str
) -> None:
    platform = engine.host_platform()
    result = smoke_test(engine, kind, built_images[image], platform=platform, timeout_s=120)
    assert (result.kind, result.platform) == (kind, platform)
    assert 0 < result.duration_s < 120
    _assert_no_leftover_containers(engine, built_images[image])


def test_seeded_variant_sets_the_seed_path_only_when_asked(
    engine: Engine, built_images: dict[str, str]
) -> None:
    plain = engine.image_config(built_images["kms"]).get("Env") or []
    seeded = engine.image_config(built_images["kms-seeded"]).get("Env") or []
    assert "KMS_SEED_PATH=" in plain  # empty: same as unset for local-kms
    assert "KMS_SEED_PATH=/ci-images/seeds/sops-test.yaml" in seeded


def test_healthcheck_is_declared(engine: Engine, built_images: dict[str, str]) -> None:
    for tag in built_images.values():
        healthcheck = engine.image_config(tag).get("Healthcheck") or {}
        assert healthcheck.get("Test", [""])[0] == "CMD-SHELL"


# -- images that must fail ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_images(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """busybox images that never serve, crash at once, or serve but have a failing / no HEALTHCHECK."""
    platform = engine.host_platform()
    try:
        busybox = lab_assets.busybox(platform.split("/")[1])
    except CiImagesError as exc:
        unavailable(f"no busybox-static: {exc}")
        raise
    base = "FROM scratch\nCOPY busybox /bin/busybox\n"
    shell = base + 'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nHEALTHCHECK CMD true\n'
    variants = {
        # Prints a marker, then never listens: the probe must give up at the deadline and show the marker.
        "silent": shell + 'ENTRYPOINT ["sh", "-c", "echo never-serving-MARK; exec sleep 600"]\n',
        "crash": shell + 'ENTRYPOINT ["sh", "-c", "echo crashing-MARK; exit 4"]\n',
        "no-healthcheck": base + 'ENTRYPOINT ["/bin/busybox", "sleep", "600"]\n',
    }
    suffix = secrets.token_hex(4)
    built: dict[str, str] = {}
    try:
        for name, dockerfile in variants.items():
            context = tmp_path_factory.mktemp(f"broken-{name}")
            shutil.copy(busybox, context / "busybox")
            (context / "Dockerfile").write_text(dockerfile.replace("MARK", suffix), encoding="utf-8")
            tag = f"ci-images-smoke-test-broken-{name}:{suffix}"
            engine.build(context, tag=tag, platform=platform, buildargs={}, labels={})
            built[name] = tag
        yield built
    finally:
        for tag in built.values():
            engine.remove_image(tag)


@pytest.mark.parametrize("kind", ["kms", "vault"])
def test_server_that_never_answers_fails_within_the_timeout(
    engine: Engine, broken_images: dict[str, str], kind: str
) -> None:
    image = broken_images["silent"]
    started = time.monotonic()
    with pytest.raises(SmokeError) as caught:
        smoke_test(engine, kind, image, platform=engine.host_platform(), timeout_s=6)
    elapsed = time.monotonic() - started
    assert elapsed < 6 + 15  # the deadline plus container start/removal
    message = str(caught.value)
    assert "did not answer within 6 s" in message
    assert f"never-serving-{image.rsplit(':', 1)[1]}" in message  # the container's own logs
    _assert_no_leftover_containers(engine, image)


def test_crashing_server_fails_fast_with_its_logs(engine: Engine, broken_images: dict[str, str]) -> None:
    image = broken_images["crash"]
    started = time.monotonic()
    with pytest.raises(SmokeError) as caught:
        smoke_test(engine, "kms", image, platform=engine.host_platform(), timeout_s=60)
    assert time.monotonic() - started < 30  # noticed the exit, did not wait for the deadline
    assert "exit code 4" in str(caught.value)
    assert f"crashing-{image.rsplit(':', 1)[1]}" in str(caught.value)
    _assert_no_leftover_containers(engine, image)


def test_image_without_healthcheck_still_gets_the_client_probe(
    engine: Engine, broken_images: dict[str, str], standin_images: dict[str, str]
) -> None:
    # Upstream local-kms has no HEALTHCHECK: mirrored as it is, it must still pass on the client probe alone.
    assert not engine.image_config(standin_images["nsmithuk/local-kms"]).get("Healthcheck")
    smoke_test(engine, "kms", standin_images["nsmithuk/local-kms"], platform=engine.host_platform())
    # ...and an image without one that never serves still fails.
    with pytest.raises(SmokeError) as caught:
        smoke_test(
            engine, "vault", broken_images["no-healthcheck"], platform=engine.host_platform(), timeout_s=10
        )
    assert "HEALTHCHECK" not in caught.value.message


def test_failing_healthcheck_fails_the_smoke_test(
    engine: Engine, standin_images: dict[str, str], tmp_path: Path
) -> None:
    """The service works but its HEALTHCHECK does not: the smoke test must notice (the check is run, not read)."""
    context = tmp_path / "bad-health"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nHEALTHCHECK CMD wget -q -O /dev/null http://127.0.0.1:1/ || exit 1\n",
        encoding="utf-8",
    )
    tag = f"ci-images-smoke-test-bad-health:{secrets.token_hex(4)}"
    platform = engine.host_platform()
    engine.build(
        context,
        tag=tag,
        platform=platform,
        buildargs={"BASE_IMAGE": standin_images["nsmithuk/local-kms"]},
        labels={},
    )
    try:
        with pytest.raises(SmokeError, match=r"HEALTHCHECK .* exited 1"):
            smoke_test(engine, "kms", tag, platform=platform, timeout_s=60)
    finally:
        engine.remove_image(tag)


def _assert_no_leftover_containers(engine: Engine, image: str) -> None:
    client: Any = engine.client
    leftovers = client.containers.list(all=True, filters={"ancestor": image, "label": CONTAINER_LABEL})
    assert not leftovers
