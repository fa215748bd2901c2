"""Pure helpers of the engine adapter: platform names and QEMU binfmt detection (against a temp dir)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ci_images.engine.failures import is_transient
from ci_images.engine.platforms import binfmt_enabled, kernel_arch, oci_arch
from ci_images.errors import EngineError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("platform", "arch"),
    [
        ("linux/amd64", "x86_64"),
        ("linux/arm64", "aarch64"),
        ("linux/arm64/v8", "aarch64"),
        ("linux/s390x", "s390x"),
    ],
)
def test_kernel_arch(platform: str, arch: str) -> None:
    assert kernel_arch(platform) == arch


@pytest.mark.parametrize("platform", ["arm64", "windows/amd64", "linux/", ""])
def test_kernel_arch_rejects_malformed_platforms(platform: str) -> None:
    with pytest.raises(EngineError):
        kernel_arch(platform)


@pytest.mark.parametrize(
    ("engine_arch", "expected"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("s390x", "s390x")]
)
def test_oci_arch(engine_arch: str, expected: str) -> None:
    assert oci_arch(engine_arch) == expected


def _register(binfmt: Path, arch: str, state: str) -> None:
    (binfmt / f"qemu-{arch}").write_text(
        f"{state}\ninterpreter /usr/libexec/qemu-binfmt/{arch}-binfmt-P\nflags: PF\noffset 0\n",
        encoding="ascii",
    )


def test_binfmt_enabled_handler(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("enabled\n", encoding="ascii")
    _register(tmp_path, "aarch64", "enabled")
    assert binfmt_enabled("aarch64", tmp_path)


def test_binfmt_disabled_or_missing_handler(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("enabled\n", encoding="ascii")
    _register(tmp_path, "aarch64", "disabled")
    assert not binfmt_enabled("aarch64", tmp_path)
    assert not binfmt_enabled("riscv64", tmp_path)
    assert not binfmt_enabled("aarch64", tmp_path / "not-mounted")


def test_binfmt_globally_disabled(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("disabled\n", encoding="ascii")
    _register(tmp_path, "aarch64", "enabled")
    assert not binfmt_enabled("aarch64", tmp_path)


@pytest.mark.parametrize(
    ("failure", "transient"),
    [
        ("toomanyrequests: You have reached your pull rate limit", True),
        ("received unexpected HTTP status: 503 Service Unavailable", True),
        ("received unexpected HTTP status: 502 Bad Gateway", True),
        ("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer", True),
        ("unexpected EOF", True),
        ("net/http: TLS handshake timeout", True),
        ("filesystem layer verification failed for digest sha256:abc", True),
        ("unauthorized: authentication required", False),
        ("manifest unknown: manifest unknown", False),
        ("pull access denied for x, repository does not exist", False),
        ("no matching manifest for linux/s390x in the manifest list entries", False),
    ],
)
def test_which_pull_failures_are_retried(failure: str, transient: bool) -> None:
    assert is_transient(failure) is transient
