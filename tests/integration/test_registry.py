"""RegistryClient against a real Debian docker-registry on loopback: TLS from certs.d, htpasswd basic auth."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
from pathlib import Path

import pytest
import requests

from ci_images.errors import RegistryError
from ci_images.lab.lab import put_tags, read_labels
from ci_images.loopback.server import RegistryServer
from ci_images.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import make_index, platform_digests
from ci_images.registry.push import gzip_deterministic
from ci_images.registry.transport import verify_bundle
from tests.integration.conftest import unavailable

pytestmark = pytest.mark.integration
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _client(server: RegistryServer) -> RegistryClient:
    assert server.username is not None
    assert server.password is not None
    return RegistryClient(server.host, credentials=Credentials(server.username, server.password))


def _repo() -> str:
    return f"ci-images-test/reg-{secrets.token_hex(4)}"


def _tiny_image(labels: dict[str, str]) -> tuple[bytes, Path, str, str]:
    """(config bytes, gzipped layer file, layer digest, layer diff_id) of a one-file image made in Python."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        data = secrets.token_bytes(2048)
        info = tarfile.TarInfo("hello.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = Path(os.environ.get("TMPDIR", "/tmp")) / f"ci-images-layer-{secrets.token_hex(4)}.tar.gz"
    with layer.open("wb") as out:
        diff_id, digest, _ = gzip_deterministic(io.BytesIO(plain.getvalue()), out)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    return json.dumps(config).encode(), layer, digest, diff_id


def test_blobs_manifest_index_tags_round_trip(auth_registry: RegistryServer) -> None:
    client, repo = _client(auth_registry), _repo()
    client.ping()
    config, layer, layer_digest, _ = _tiny_image({"org.example.kind": "tiny", "org.example.shared": "config"})
    try:
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        client.upload_blob(repo, config_digest, config)
        client.upload_blob(repo, layer_digest, layer)
        assert client.blob_exists(repo, layer_digest)
        assert client.get_blob(repo, config_digest) == config
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.stat().st_size}
                ],
            }
        ).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        assert client.put_manifest(repo, manifest_digest, manifest, OCI_MANIFEST) == manifest_digest
        assert client.list_tags(repo) == []  # stored by digest: no tag left behind

        body, media_type = make_index(
            [Descriptor(OCI_MANIFEST, manifest_digest, len(manifest), "linux/amd64")],
            {"org.example.shared": "index", "org.opencontainers.image.version": "1.2.3"},
        )
        index_digest = put_tags(client, repo, body, media_type, ["1.2.3", "latest"])
        assert sorted(client.list_tags(repo)) == ["1.2.3", "latest"]
        info = client.head_manifest(repo, "latest")
        assert info is not None
        assert (info.digest, info.media_type, info.size) == (index_digest, OCI_INDEX, len(body))
        assert read_labels(client, repo, "1.2.3") == (
            index_digest,
            {
                "org.example.kind": "tiny",
                "org.example.shared": "index",
                "org.opencontainers.image.version": "1.2.3",
            },
        )
        assert read_labels(client, repo, manifest_digest) == (
            manifest_digest,
            {"org.example.kind": "tiny", "org.example.shared": "config"},
        )
        assert platform_digests(client, repo, "latest") == {"linux/amd64": manifest_digest}
        assert platform_digests(client, repo, manifest_digest) == {"linux/amd64": manifest_digest}

        # Everything again from a fresh client: existing blobs are not uploaded a second time.
        again = _client(auth_registry)
        before = len(auth_registry.requests())
        again.upload_blob(repo, config_digest, config)
        again.upload_blob(repo, layer_digest, layer)
        assert again.count("POST", "upload") == again.count("PUT", "upload") == 0
        assert [m for m, _ in auth_registry.requests()[before:] if m in {"POST", "PUT", "PATCH"}] == []

        # Cross-repo mount: the registry links the blob into another repo without a PUT of its bytes.
        other = _repo()
        again.upload_blob(other, layer_digest, layer, mount_from=repo)
        assert again.count("POST", "upload") == 1
        assert again.count("PUT", "upload") == 0
        assert again.blob_exists(other, layer_digest)
    finally:
        layer.unlink()


def test_missing_tag_is_none(auth_registry: RegistryServer) -> None:
    client = _client(auth_registry)
    assert client.head_manifest(_repo(), "no-such-tag") is None
    assert client.get_manifest(_repo(), "no-such-tag") is None
    assert read_labels(client, _repo(), "no-such-tag") is None
    assert client.list_tags(_repo()) == []


def test_wrong_password_is_a_clear_error_without_the_password(auth_registry: RegistryServer) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    client = RegistryClient(auth_registry.host, credentials=Credentials("ci-user", wrong))
    with pytest.raises(RegistryError) as caught:
        client.head_manifest(_repo(), "latest")
    text = str(caught.value)
    assert wrong not in text
    assert "401" in text
    assert "CI_IMAGES_REGISTRY_USER" in text
    assert "CI_IMAGES_REGISTRY_PASSWORD" in text


def test_anonymous_client_is_told_which_credentials_to_set(auth_registry: RegistryServer) -> None:
    with pytest.raises(RegistryError, match="no credentials were given"):
        RegistryClient(auth_registry.host).ping()


def test_certs_d_ca_is_trusted_although_requests_ca_bundle_is_the_system_one(
    auth_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path(SYSTEM_BUNDLE).is_file():
        unavailable(f"no system CA bundle at {SYSTEM_BUNDLE}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", SYSTEM_BUNDLE)
    monkeypatch.setenv("SSL_CERT_FILE", SYSTEM_BUNDLE)
    certs_d = Path("/etc/docker/certs.d") / auth_registry.host / "ca.crt"
    assert certs_d.is_file(), "start_registry installs the lab CA for the engine"
    # Plain requests with the environment's bundle does not trust the lab CA...
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{auth_registry.host}/v2/", timeout=10)
    # ...the client does, because it passes the certs.d CA (plus the system bundle) as verify= per request.
    assert verify_bundle(auth_registry.host) != SYSTEM_BUNDLE
    _client(auth_registry).ping()
