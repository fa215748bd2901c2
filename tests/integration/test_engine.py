"""Engine adapter against the real engine: builds (native and QEMU), labels, save, tag, services, cleanup."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from ci_images.engine.client import CONTAINER_PREFIX, Engine
from ci_images.engine.platforms import binfmt_enabled
from ci_images.errors import BuildError, CiImagesError, EngineError, RegistryError
from ci_images.lab import assets as lab_assets
from ci_images.loopback.server import RegistryServer, start_registry
from tests.integration.conftest import unavailable

pytestmark = [
    pytest.mark.integration,
    # start_registry drops its Popen handle while the registry runs on (the lab owner knows); ignore only that.
]

PLATFORMS = ("linux/amd64", "linux/arm64")
# busybox httpd serves /www; GREETING proves build args arrive, HTTP_PORT is how a host-network run moves it.
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
ARG GREETING
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir /www && echo \\"$GREETING\\" > /www/greeting"]
EXPOSE 8000
CMD ["sh", "-c", "echo serving; exec httpd -f -v -p 0.0.0.0:${HTTP_PORT:-8000} -h /www"]
"""


def _context(directory: Path, platform: str, dockerfile: str) -> Path:
    arch = platform.split("/")[1]
    try:
        binary = lab_assets.busybox(arch)
    except CiImagesError as exc:
        unavailable(f"no busybox-static for {arch}: {exc}")
        raise
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(binary, directory / "busybox")
    (directory / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def built(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, str, str]]]:
    """platform -> (tag, image id, greeting) of a tiny busybox image built for each platform this host runs."""
    images: dict[str, tuple[str, str, str]] = {}
    try:
        for platform in PLATFORMS:
            if not engine.can_run(platform):
                continue
            arch = platform.split("/")[1]
            context = _context(tmp_path_factory.mktemp(f"busybox-{arch}"), platform, DOCKERFILE)
            tag = f"ci-images-engine-test-{secrets.token_hex(4)}:{arch}"
            greeting = f"hello-{secrets.token_hex(4)}"
            image_id = engine.build(
                context,
                tag=tag,
                platform=platform,
                buildargs={"GREETING": greeting},
                labels={"org.opencontainers.image.title": "engine-test", "org.example.platform": platform},
            )
            images[platform] = (tag, image_id, greeting)
        yield images
    finally:
        for tag, _, _ in images.values():
            engine.remove_image(tag)


def _built(built: dict[str, tuple[str, str, str]], platform: str) -> tuple[str, str, str]:
    if platform not in built:
        unavailable(f"this host cannot run {platform} (no QEMU binfmt handler)")
    return built[platform]


def test_network_mode_follows_the_bridge_network(engine: Engine) -> None:
    client: Any = engine.client
    has_bridge = bool(client.networks.list(names=["bridge"]))
    assert engine.network_mode == (None if has_bridge else "host")


def test_can_run_native_and_emulated(engine: Engine) -> None:
    assert engine.can_run(engine.host_platform())
    if engine.host_platform() == "linux/amd64":
        assert engine.can_run("linux/arm64") == binfmt_enabled("aarch64")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_build_sets_labels_and_platform(
    engine: Engine, built: dict[str, tuple[str, str, str]], platform: str
) -> None:
    tag, image_id, _ = _built(built, platform)
    assert image_id.startswith("sha256:")
    client: Any = engine.client
    assert client.images.get(tag).id == image_id
    assert engine.image_platform(tag) == platform
    labels = engine.image_labels(image_id)
    assert labels["org.opencontainers.image.title"] == "engine-test"
    assert labels["org.example.platform"] == platform


@pytest.mark.parametrize("platform", PLATFORMS)
def test_run_service_answers_on_loopback_and_is_removed(
    engine: Engine, built: dict[str, tuple[str, str, str]], platform: str
) -> None:
    tag, _, greeting = _built(built, platform)
    with engine.run_service(
        tag, platform=platform, env={}, container_port=8000, port_env=lambda port: {"HTTP_PORT": str(port)}
    ) as service:
        name = service.container.name
        assert name.startswith(CONTAINER_PREFIX)
        assert service.host == "127.0.0.1"
        body = _get_with_retry(f"http://127.0.0.1:{service.port}/greeting")
        assert body.strip() == greeting
        assert service.exec(["cat", "/www/greeting"], timeout_s=30) == (0, f"{greeting}\n")
        exit_code, _ = service.exec(["sh", "-c", "exit 3"], timeout_s=30)
        assert exit_code == 3
        assert service.read_file("/www/greeting") == f"{greeting}\n".encode()
        assert "serving" in service.logs()
    _assert_gone(engine, name)


def _get_with_retry(url: str) -> str:
    session = requests.Session()
    session.trust_env = False
    last: Exception | None = None
    for _ in range(60):
        try:
            response = session.get(url, timeout=5)
            if response.status_code == 200:
                return response.text
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)  # emulated starts are slow: a bounded poll, not one fixed sleep
    raise AssertionError(f"{url} never answered: {last}")


def _assert_gone(engine: Engine, name: str) -> None:
    client: Any = engine.client
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_run_service_removes_container_on_error(
    engine: Engine, built: dict[str, tuple[str, str, str]], error: type[BaseException]
) -> None:
    platform = engine.host_platform()
    tag, _, _ = _built(built, platform)
    names: list[str] = []

    def fail_inside() -> None:
        with engine.run_service(
            tag, platform=platform, env={}, container_port=8000, port_env=lambda _: {}
        ) as service:
            names.append(service.container.name)
            raise error("boom")

    with pytest.raises(error):
        fail_inside()
    assert names
    _assert_gone(engine, names[0])


def test_run_service_refuses_other_platform_image(
    engine: Engine, built: dict[str, tuple[str, str, str]]
) -> None:
    tag, _, _ = _built(built, "linux/arm64")
    with (
        pytest.raises(EngineError),
        engine.run_service(tag, platform="linux/amd64", env={}, container_port=8000, port_env=lambda _: {}),
    ):
        pass
    client: Any = engine.client
    assert not client.containers.list(all=True, filters={"ancestor": tag})


def test_save_yields_a_docker_archive(engine: Engine, built: dict[str, tuple[str, str, str]]) -> None:
    tag, image_id, _ = _built(built, engine.host_platform())
    data = b"".join(engine.save(tag))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = set(archive.getnames())
        manifest_file = archive.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)
    assert len(manifest) == 1
    assert manifest[0]["Config"] in names
    assert image_id.removeprefix("sha256:") in manifest[0]["Config"]
    assert all(layer in names for layer in manifest[0]["Layers"])


def test_tag_then_remove_image(engine: Engine, built: dict[str, tuple[str, str, str]]) -> None:
    _, image_id, _ = _built(built, engine.host_platform())
    ref = f"127.0.0.1:5999/ci-images-engine-test/tagged-{secrets.token_hex(4)}:v1"
    engine.tag(image_id, ref)
    assert engine.image_labels(ref)["org.opencontainers.image.title"] == "engine-test"
    engine.remove_image(ref)
    engine.remove_image(ref)  # already gone: not an error
    with pytest.raises(EngineError):
        engine.image_labels(ref)


def test_failed_build_reports_the_log_tail(engine: Engine, tmp_path: Path) -> None:
    platform = engine.host_platform()
    marker = f"marker-{secrets.token_hex(4)}"
    dockerfile = f'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo {marker}; exit 3"]\n'
    context = _context(tmp_path / "ctx", platform, dockerfile)
    tag = f"ci-images-engine-test-{secrets.token_hex(4)}:broken"
    with pytest.raises(BuildError) as caught:
        engine.build(context, tag=tag, platform=platform, buildargs={}, labels={})
    assert marker in str(caught.value)
    assert "returned a non-zero code: 3" in str(caught.value)


@pytest.fixture
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-http registry on loopback (engines treat 127.0.0.0/8 as insecure-allowed by default)."""
    if shutil.which("docker-registry") is None:
        unavailable("Debian's docker-registry is not installed")
    server = start_registry(tmp_path_factory.mktemp("engine-registry"))
    yield server
    server.stop()


def test_pull_by_tag_and_digest_then_skip_what_is_present(
    engine: Engine, built: dict[str, tuple[str, str, str]], local_registry: RegistryServer
) -> None:
    platform = engine.host_platform()
    _, image_id, _ = _built(built, platform)
    repo = f"{local_registry.host}/ci-images-engine-test/pull-{secrets.token_hex(4)}"
    engine.tag(image_id, f"{repo}:v1")
    client: Any = engine.client
    pushed = list(client.images.push(repo, tag="v1", stream=True, decode=True))
    digest = next(
        c["aux"]["Digest"] for c in pushed if isinstance(c.get("aux"), dict) and "Digest" in c["aux"]
    )
    engine.remove_image(f"{repo}:v1")
    assert not engine.has_image(f"{repo}:v1")
    try:
        engine.pull(f"{repo}:v1", platform=platform)
        assert engine.has_image(f"{repo}:v1")
        with pytest.raises(RegistryError, match=r"not found|manifest unknown"):
            engine.pull(f"{repo}:missing", platform=platform)
        by_digest = f"{repo}@{digest}"
        engine.pull(by_digest, platform=platform)
        assert engine.has_image(by_digest)
        local_registry.stop()
        engine.pull(by_digest, platform=platform)  # already present: must not need the (stopped) registry
    finally:
        engine.remove_image(f"{repo}:v1")
        engine.remove_image(f"{repo}@{digest}")
