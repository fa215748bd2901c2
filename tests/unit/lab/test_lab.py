"""The lab's pure parts: certificates, request-log parsing, state round trips, recipe hashes, the kms front door."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from ci_images.cache import cache_home
from ci_images.engine.dockerd import ensure_engine
from ci_images.errors import EngineError, LabError
from ci_images.lab import assets as lab_assets
from ci_images.lab.lab import Lab, recipe_hash, standin_ref
from ci_images.loopback.certs import CertificateAuthority
from ci_images.loopback.server import RegistryServer

LAB_FILES = Path(__file__).resolve().parents[3] / "src" / "ci_images" / "lab" / "files"
ACCESS_LOG = """\
time="2026-01-01T00:00:00Z" level=info msg="listening on 127.0.0.1:5999" go.version=go1.19.8
time="2026-01-01T00:00:01Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/
127.0.0.1 - - [01/Jan/2026:00:00:01 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
127.0.0.1 - user [01/Jan/2026:00:00:02 +0000] "HEAD /v2/hashicorp/vault/manifests/2.0.0 HTTP/1.1" 404 0 "" "x"
"""


def server(tmp_path: Path, **changes: Any) -> RegistryServer:
    values: dict[str, Any] = {
        "host": "127.0.0.1:5999",
        "plain_http": False,
        "ca_cert": tmp_path / "ca.crt",
        "username": "lab-user",
        "password": "lab-password-123",
        "data_dir": tmp_path / "data",
        "log_path": tmp_path / "registry.log",
        "pid": 0,
    }
    return RegistryServer(**(values | changes))


def test_server_certificate_is_issued_by_the_lab_ca_for_loopback(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    cert_path, key_path = ca.issue_server_cert(tmp_path / "tls")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert oct(key_path.stat().st_mode & 0o777) == oct(0o600)
    assert oct(ca.key_path.stat().st_mode & 0o777) == oct(0o600)


def test_requests_are_parsed_from_the_access_log_and_can_be_reset(tmp_path: Path) -> None:
    registry = server(tmp_path)
    assert registry.requests() == []
    registry.log_path.write_text(ACCESS_LOG, encoding="utf-8")
    assert registry.requests() == [("GET", "/v2/"), ("HEAD", "/v2/hashicorp/vault/manifests/2.0.0")]
    registry.reset_requests()
    with registry.log_path.open("a", encoding="utf-8") as fh:
        fh.write('127.0.0.1 - - [01/Jan/2026:00:00:03 +0000] "PUT /v2/a/manifests/b HTTP/1.1" 201 0 "" "x"\n')
    assert registry.requests() == [("PUT", "/v2/a/manifests/b")]


def test_registry_state_round_trips_and_hides_the_password(tmp_path: Path) -> None:
    registry = server(tmp_path, installed_ca=tmp_path / "certs.d" / "ca.crt", log_offset=12)
    assert "lab-password-123" not in repr(registry)
    again = RegistryServer.from_json(registry.to_json())
    assert again == registry
    assert again.url == "https://127.0.0.1:5999"
    assert again.port == 5999
    assert not again.alive()  # pid 0 is nobody's registry
    again.stop()  # idempotent on a registry that is not running


def test_lab_env_points_the_tool_at_the_lab(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca.crt", tmp_path / "ca.key")
    lab = Lab(
        workdir=tmp_path,
        ca=ca,
        upstream=server(tmp_path, host="127.0.0.1:4001", username=None, password=None),
        target=server(tmp_path, host="127.0.0.1:4002"),
        ca_bundle=tmp_path / "bundle.pem",
        platforms=["linux/amd64"],
        standins={"hashicorp/vault": {"2.0.0": "sha256:" + "0" * 64}},
    )
    env = lab.env()
    assert env["CI_IMAGES_UPSTREAM_MIRROR"] == "127.0.0.1:4001"
    assert env["CI_IMAGES_REGISTRY"] == "127.0.0.1:4002/getsops/ci-container-images"
    assert (env["CI_IMAGES_REGISTRY_USER"], env["CI_IMAGES_REGISTRY_PASSWORD"]) == (
        "lab-user",
        "lab-password-123",
    )
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        assert env[name] == str(tmp_path / "bundle.pem")
    lab.save()
    assert (tmp_path / "lab.json").stat().st_mode & 0o077 == 0  # it holds the password
    assert Lab.load(tmp_path) == lab


def test_recipe_hashes_are_stable_and_per_kind_and_platform() -> None:
    first = recipe_hash("vault", "linux/amd64")
    assert first == recipe_hash("vault", "linux/amd64")
    assert len({first, recipe_hash("vault", "linux/arm64"), recipe_hash("local-kms", "linux/amd64")}) == 3
    ref = standin_ref("hashicorp/vault", "2.0.0", "linux/arm64")
    assert ref.startswith("ci-images-lab/vault:2.0.0-arm64-")
    assert ref != standin_ref("hashicorp/vault", "1.21.4", "linux/arm64")
    # The demo service is a stand-in too, under the name catalogs give it.
    assert standin_ref("cilab/demo-service", "1.0.0", "linux/amd64").startswith(
        "ci-images-lab/demo-service:1.0.0-amd64-"
    )
    assert recipe_hash("demo-service", "linux/amd64") not in {
        first,
        recipe_hash("demo-service", "linux/arm64"),
    }
    with pytest.raises(LabError, match="no stand-in"):
        standin_ref("library/redis", "7", "linux/amd64")
    with pytest.raises(LabError, match="platform"):
        standin_ref("hashicorp/vault", "2.0.0", "linux/s390x")


def test_cloned_store_shares_blobs_and_copies_the_rest(tmp_path: Path) -> None:
    blob = (
        tmp_path
        / "cache"
        / "data"
        / "docker"
        / "registry"
        / "v2"
        / "blobs"
        / "sha256"
        / "ab"
        / "abc"
        / "data"
    )
    link = (
        tmp_path
        / "cache"
        / "data"
        / "docker"
        / "registry"
        / "v2"
        / "repositories"
        / "r"
        / "_manifests"
        / "link"
    )
    for path, text in ((blob, "layer"), (link, "sha256:abc")):
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    target = tmp_path / "registry" / "data"
    assert lab_assets.clone_store(tmp_path / "cache", target)
    cloned_blob = target / blob.relative_to(tmp_path / "cache" / "data")
    cloned_link = target / link.relative_to(tmp_path / "cache" / "data")
    assert cloned_blob.stat().st_ino == blob.stat().st_ino
    assert cloned_link.stat().st_ino != link.stat().st_ino
    assert cloned_link.read_text(encoding="utf-8") == "sha256:abc"
    assert not lab_assets.clone_store(tmp_path / "missing", tmp_path / "other")


def _front_door() -> Any:
    # moto comes with the `lab` dependency group, which every test session installs: a missing moto fails here.
    spec = importlib.util.spec_from_file_location(
        "standin_local_kms", LAB_FILES / "local-kms" / "local-kms.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kms_front_door_answers_like_local_kms() -> None:
    module = _front_door()
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [])
        return [b"{}"]

    door = module.front_door(app)
    statuses: list[str] = []

    def call(
        method: str, path: str = "/", content_type: str = "application/x-amz-json-1.1", **extra: str
    ) -> str:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_TYPE": content_type, **extra}
        door(environ, lambda status, headers: statuses.append(status))
        return statuses[-1]

    assert call("GET").startswith("405")
    assert call("POST", "/other").startswith("404")
    assert call("POST", content_type="text/plain").startswith("415")
    signed = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=1"
    assert call("POST", HTTP_AUTHORIZATION=signed).startswith("200")
    assert f"/20260101/{module.REGION}/kms/" in seen[-1]["HTTP_AUTHORIZATION"]
    assert call("POST", content_type="application/json").startswith("200")
    assert f"/{module.REGION}/kms/" in seen[-1]["HTTP_AUTHORIZATION"]


def test_cache_home_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_home() == tmp_path / "ci-images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_home() == Path.home() / ".cache" / "ci-images"


def test_no_engine_is_an_engine_error_that_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(EngineError, match="no Docker engine answers") as caught:
        ensure_engine(start=True)  # DOCKER_HOST names an engine elsewhere: never start a local dockerd for it
    assert caught.value.fix is not None
    assert "docker.io" in caught.value.fix
    assert "DOCKER_HOST" in caught.value.fix


def test_standins_for_follows_per_version_sources_and_platforms(tmp_path: Path) -> None:
    from ci_images.lab.cli import standins_for

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n", encoding="utf-8")
    catalog = tmp_path / "images.yaml"
    catalog.write_text(
        """
platforms: [linux/amd64, linux/arm64]
images:
  kms:
    source: docker.io/nsmithuk/local-kms
    versions: [{version: "3.11.0", platforms: [linux/amd64]}, "3.11.1"]
    build: img
  vault:
    source: docker.io/hashicorp/vault
    versions: [{version: "1.10.0", source: docker.io/vault, platforms: [linux/amd64]}, "2.0.0"]
    build: img
  vault-upstream:
    source: docker.io/library/vault
    target: mirror/library/vault
    versions: ["1.10.0"]
    platforms: all
    tags: ["{version}"]
  elsewhere:
    source: quay.io/acme/tool
    versions: ["1.0.0"]
""",
        encoding="utf-8",
    )
    standins, platforms, narrowed = standins_for(catalog)
    assert standins == {
        "nsmithuk/local-kms": ["3.11.0", "3.11.1"],
        "library/vault": ["1.10.0"],
        "hashicorp/vault": ["2.0.0"],
    }
    assert platforms == ["linux/amd64", "linux/arm64"]
    # 3.11.0 is taken for amd64 only; vault 1.10.0 too by the build, but the mirror takes all upstream has.
    assert narrowed == {"nsmithuk/local-kms:3.11.0": ["linux/amd64"]}
