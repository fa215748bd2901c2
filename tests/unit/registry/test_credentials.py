"""Credential resolution from the environment and docker's config.json (with a real credential helper)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from ci_images.errors import UsageError
from ci_images.registry.auth import Credentials
from ci_images.registry.credentials import resolve_credentials, resolve_upstream_credentials

# Secrets registered here must not leak into (or redact) other tests' output.
pytestmark = pytest.mark.usefixtures("secrets")


def test_target_variables_win(tmp_path: Path) -> None:
    env = {
        "CI_IMAGES_REGISTRY_USER": "bot",
        "CI_IMAGES_REGISTRY_PASSWORD": "pw-1234",
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_TOKEN": "ghs_abc",
        "DOCKER_CONFIG": str(tmp_path),
    }
    assert resolve_credentials("ghcr.io", env) == Credentials("bot", "pw-1234")


@pytest.mark.parametrize(
    "env",
    [{"CI_IMAGES_REGISTRY_USER": "bot"}, {"CI_IMAGES_REGISTRY_PASSWORD": "pw-1234"}],
)
def test_half_a_pair_is_a_usage_error_naming_both(env: dict[str, str]) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_credentials("ghcr.io", env)
    assert "CI_IMAGES_REGISTRY_USER" in str(caught.value)
    assert "CI_IMAGES_REGISTRY_PASSWORD" in str(caught.value)
    assert "pw-1234" not in str(caught.value)


def test_github_token_for_ghcr_in_actions_only(tmp_path: Path) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_TOKEN": "ghs_abc",
        "HOME": str(tmp_path),
    }
    assert resolve_credentials("ghcr.io", env) == Credentials("octocat", "ghs_abc")
    assert resolve_credentials("registry.example.com", env) is None
    assert resolve_credentials("ghcr.io", {**env, "GITHUB_ACTIONS": "false"}) is None


def test_docker_config_auths(tmp_path: Path) -> None:
    auth = base64.b64encode(b"alice:from-config").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5443": {"auth": auth}}}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert resolve_credentials("127.0.0.1:5443", env) == Credentials("alice", "from-config")
    assert resolve_credentials("127.0.0.1:9999", env) is None


def test_docker_config_under_home(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    auth = base64.b64encode(b"carol:home-pw").decode()
    (tmp_path / ".docker" / "config.json").write_text(
        json.dumps({"auths": {"https://ghcr.io": {"auth": auth}}})
    )
    assert resolve_credentials("ghcr.io", {"HOME": str(tmp_path)}) == Credentials("carol", "home-pw")


def _helper(bin_dir: Path, name: str) -> None:
    # A real credential helper program (docker's protocol: `get`, server URL on stdin, JSON on stdout).
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "assert sys.argv[1] == 'get'\n"
        "server = sys.stdin.read().strip()\n"
        "if server != 'registry.example.com':\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps({'ServerURL': server, 'Username': 'helper-user', 'Secret': 'helper-secret'}))\n"
    )
    script.chmod(0o755)


def test_docker_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path / "bin", "unit")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"registry.example.com": "unit"}}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert resolve_credentials("registry.example.com", env) == Credentials("helper-user", "helper-secret")
    assert resolve_credentials("other.example.com", env) is None


def test_missing_credential_helper_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "nonexistent-helper"}))
    with pytest.raises(UsageError, match="credential helper"):
        resolve_credentials("registry.example.com", {"DOCKER_CONFIG": str(tmp_path)})


def test_upstream_credentials() -> None:
    env = {"CI_IMAGES_UPSTREAM_USER": "hubuser", "CI_IMAGES_UPSTREAM_PASSWORD": "hub-pat"}
    assert resolve_upstream_credentials(env) == Credentials("hubuser", "hub-pat")
    assert resolve_upstream_credentials({}) is None
    with pytest.raises(UsageError, match="CI_IMAGES_UPSTREAM_USER and CI_IMAGES_UPSTREAM_PASSWORD"):
        resolve_upstream_credentials({"CI_IMAGES_UPSTREAM_PASSWORD": "hub-pat"})
