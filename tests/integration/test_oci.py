"""push_engine_image with a real engine image (busybox-static, built offline) into a real TLS registry."""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from ci_images.engine.client import Engine
from ci_images.errors import BuildError
from ci_images.lab.lab import put_tags, read_labels
from ci_images.loopback.server import RegistryServer
from ci_images.oci import OCI_INDEX
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import make_index, platform_digests
from ci_images.registry.push import push_engine_image
from tests.integration.conftest import unavailable

pytestmark = pytest.mark.integration
BUSYBOX = Path("/bin/busybox")


@pytest.fixture(scope="module")
def busybox_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not BUSYBOX.is_file():
        unavailable("busybox-static is not installed (/bin/busybox)")
    context = tmp_path_factory.mktemp("busybox")
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n',
        encoding="utf-8",
    )
    tag = f"ci-images-oci-test-{secrets.token_hex(4)}:latest"
    client: Any = engine.client
    client.images.build(
        path=str(context),
        tag=tag,
        network_mode="host",
        pull=False,
        rm=True,
        labels={"org.example.test": "oci"},
    )
    yield tag
    engine.remove_image(tag)


def _client(server: RegistryServer) -> RegistryClient:
    assert server.username is not None
    assert server.password is not None
    return RegistryClient(server.host, credentials=Credentials(server.username, server.password))


def test_push_engine_image_by_digest_then_index_and_pull(
    engine: Engine, auth_registry: RegistryServer, busybox_image: str
) -> None:
    repo = f"ci-images-test/oci-{secrets.token_hex(4)}"
    client = _client(auth_registry)
    descriptor = push_engine_image(engine, client, repo, busybox_image, platform="linux/amd64")
    assert descriptor.platform == "linux/amd64"
    assert client.list_tags(repo) == []  # by digest only
    assert client.count("PUT", "manifest") == 1

    # A second push of the same image uploads no blob: identical gzip bytes, identical digests.
    second = _client(auth_registry)
    assert push_engine_image(engine, second, repo, busybox_image, platform="linux/amd64") == descriptor
    assert second.count("POST", "upload") == second.count("PUT", "upload") == 0

    body, media_type = make_index([descriptor], {"org.opencontainers.image.version": "9.9.9"})
    digest = put_tags(client, repo, body, media_type, ["9.9.9", "latest"])
    info = client.head_manifest(repo, "latest")
    assert info is not None
    assert (info.digest, info.media_type) == (digest, OCI_INDEX)
    assert read_labels(client, repo, "latest") == (
        digest,
        {"org.example.test": "oci", "org.opencontainers.image.version": "9.9.9"},
    )
    assert platform_digests(client, repo, "9.9.9") == {"linux/amd64": descriptor.digest}

    # The engine itself accepts what we wrote: pulling by digest gives back the very same image config.
    docker_client: Any = engine.client
    auth = {"username": auth_registry.username, "password": auth_registry.password}
    pulled_ref = f"{auth_registry.host}/{repo}@{descriptor.digest}"
    try:
        pulled = docker_client.images.pull(
            f"{auth_registry.host}/{repo}", tag=descriptor.digest, auth_config=auth
        )
        assert pulled.id == docker_client.images.get(busybox_image).id
        index_pull = docker_client.images.pull(f"{auth_registry.host}/{repo}", tag="latest", auth_config=auth)
        assert index_pull.id == pulled.id
    finally:
        for ref in (pulled_ref, f"{auth_registry.host}/{repo}:latest"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(ref)


def test_platform_mismatch_is_refused(
    engine: Engine, auth_registry: RegistryServer, busybox_image: str
) -> None:
    client = _client(auth_registry)
    with pytest.raises(BuildError, match="is linux/amd64, expected linux/arm64"):
        push_engine_image(engine, client, "ci-images-test/never", busybox_image, platform="linux/arm64")
    assert client.request_count == 0  # refused before anything was sent
