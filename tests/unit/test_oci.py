"""The registry's words (ci_images.oci): digests, platforms, Go-style JSON, and the loopback conventions. Pure."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from ci_images import oci
from ci_images.errors import RegistryError, UsageError
from ci_images.oci import (
    digest_of,
    digest_tag,
    go_json,
    is_loopback_host,
    join_platform,
    refuse_plain_http,
    require_platforms,
    sha256_digest,
    short_digest,
    split_platform,
)


def test_digests() -> None:
    assert sha256_digest(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    hasher = hashlib.sha256()
    for piece in (b"a", b"b", b"c"):
        hasher.update(piece)
    assert digest_of(hasher) == sha256_digest(b"abc")
    assert short_digest(sha256_digest(b"abc")) == hashlib.sha256(b"abc").hexdigest()[:12]
    assert short_digest(None) == "-"
    assert short_digest("", empty="none") == "none"
    assert digest_tag("sha256:" + "ab" * 32, "sig") == "sha256-" + "ab" * 32 + ".sig"
    assert digest_tag("sha256:" + "ab" * 32, "att") == "sha256-" + "ab" * 32 + ".att"


def test_go_json_is_what_go_writes() -> None:
    """encoding/json: insertion order, no spaces, HTML-sensitive characters escaped (json.Marshal's default)."""
    document = {"b": 1, "a": "<x> & \u2028", "c": None}
    assert go_json(document) == b'{"b":1,"a":"\\u003cx\\u003e \\u0026 \\u2028","c":null}'
    assert json.loads(go_json(document)) == document


@pytest.mark.parametrize(
    ("spec", "platform"),
    [
        ({"os": "linux", "architecture": "amd64"}, "linux/amd64"),
        ({"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux/arm64"),
        ({"os": "linux", "architecture": "arm", "variant": "v7"}, "linux/arm/v7"),
    ],
)
def test_platform_strings(spec: dict[str, str], platform: str) -> None:
    assert join_platform(spec) == platform
    assert join_platform(split_platform(platform)) == platform


def test_split_platform_rejects_nonsense() -> None:
    with pytest.raises(UsageError, match="OS/ARCH"):
        split_platform("amd64")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("LOCALHOST:5000", True),
        ("127.0.0.1", True),
        ("127.0.0.1:5000", True),
        ("127.8.9.10:443", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("::1", True),
        ("ghcr.io", False),
        ("10.0.0.1:5000", False),
        ("0.0.0.0:5000", False),
        ("localhost.example.com", False),
        ("[::2]:5000", False),
        ("[::1", True),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_plain_http_only_to_loopback() -> None:
    refuse_plain_http("127.0.0.1:5000", "--registry")
    refuse_plain_http("localhost:5000", "--registry")
    with pytest.raises(UsageError) as raised:
        refuse_plain_http("ghcr.io", "--plain-http")
    assert raised.value.exit_code == 2
    assert "--plain-http" in raised.value.message and "ghcr.io" in raised.value.message
    assert "/etc/docker/certs.d/ghcr.io/ca.crt" in (raised.value.fix or "")


def test_require_platforms_names_what_is_missing_and_what_there_is() -> None:
    require_platforms("x/y:1", ["linux/amd64"], {"linux/amd64": "d", "linux/arm64": "e"}, fix="f")
    with pytest.raises(RegistryError) as raised:
        require_platforms("x/y:1", ["linux/amd64", "linux/s390x"], ["linux/arm64"], fix="give platforms")
    assert (
        raised.value.message
        == "upstream x/y:1 has no image for linux/amd64, linux/s390x (it has linux/arm64)"
    )
    assert raised.value.fix == "give platforms"


def test_certs_d_is_per_host_and_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert oci.certs_d_ca("127.0.0.1:5000") == Path("/etc/docker/certs.d/127.0.0.1:5000/ca.crt")
    monkeypatch.setattr(oci, "CERTS_D", tmp_path)
    assert oci.certs_d_ca("ghcr.io") == tmp_path / "ghcr.io" / "ca.crt"


def test_free_loopback_port_is_not_one_in_use() -> None:
    """A port held by a listener is never handed out again while it is held."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((oci.LOOPBACK, oci.free_loopback_port()))
        held.listen()
        taken = held.getsockname()[1]
        others = {oci.free_loopback_port() for _ in range(20)}
    assert taken not in others
    assert all(1024 <= port <= 65535 for port in others)
