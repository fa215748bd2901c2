"""Which credentials to use for a registry: environment variables first, then docker's own login state."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from ci_images.catalog.refs import DOCKER_HUB_ALIASES
from ci_images.errors import UsageError
from ci_images.log import log
from ci_images.registry.auth import Credentials

TARGET_USER, TARGET_PASSWORD = "CI_IMAGES_REGISTRY_USER", "CI_IMAGES_REGISTRY_PASSWORD"
UPSTREAM_USER, UPSTREAM_PASSWORD = "CI_IMAGES_UPSTREAM_USER", "CI_IMAGES_UPSTREAM_PASSWORD"


def _pair(env: Mapping[str, str], user_var: str, password_var: str) -> Credentials | None:
    user, password = env.get(user_var, ""), env.get(password_var, "")
    if password:
        log.add_mask(password)
    if bool(user) != bool(password):
        missing = password_var if user else user_var
        raise UsageError(
            f"{user_var} and {password_var} must be set together; {missing} is empty",
            fix=f"set both {user_var} and {password_var}, or neither",
        )
    return Credentials(user, password) if user else None


def resolve_credentials(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for the TARGET registry ``host`` (e.g. "ghcr.io", "127.0.0.1:5000"); None means anonymous.

    Order: CI_IMAGES_REGISTRY_USER/_PASSWORD; on ghcr.io inside GitHub Actions GITHUB_ACTOR/GITHUB_TOKEN; docker's
    config.json (DOCKER_CONFIG or ~/.docker/config.json) including its credential helpers.
    """
    env = os.environ if env is None else env
    explicit = _pair(env, TARGET_USER, TARGET_PASSWORD)
    if explicit:
        return explicit
    if host == "ghcr.io" and env.get("GITHUB_ACTIONS") == "true" and env.get("GITHUB_TOKEN"):
        # GHCR checks the token, not the name; the actor is the natural name and always set by the runner.
        return Credentials(env.get("GITHUB_ACTOR") or "github-actions", env["GITHUB_TOKEN"])
    return _from_docker_config(host, env)


def resolve_upstream_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for the upstream registry (Docker Hub or its mirror): only from the environment."""
    return _pair(os.environ if env is None else env, UPSTREAM_USER, UPSTREAM_PASSWORD)


def docker_config_path(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def _from_docker_config(host: str, env: Mapping[str, str]) -> Credentials | None:
    path = docker_config_path(env)
    if not path.is_file():
        return None
    # Imported here: the docker SDK costs a noticeable part of start-up, and most runs take credentials from the
    # environment.
    import docker.auth
    import docker.errors

    # docker keys Docker Hub as "docker.io" (resolve_authconfig maps that to index.docker.io for helpers).
    registry = "docker.io" if host in DOCKER_HUB_ALIASES else host
    try:
        with warnings.catch_warnings():
            # The SDK warns (instead of failing) when a configured helper is not on PATH; we fail below instead.
            warnings.simplefilter("ignore")
            config = docker.auth.load_config(config_path=str(path), credstore_env=dict(env))
            entry = docker.auth.resolve_authconfig(config, registry=registry, credstore_env=dict(env))
    except docker.errors.DockerException as exc:
        raise UsageError(
            f"docker credentials for {host} from {path} could not be read: {exc}",
            fix=f"install the credential helper named in {path}, `docker login {host}` again, or set "
            f"{TARGET_USER} and {TARGET_PASSWORD}",
        ) from exc
    if not entry:
        return None
    user, password = (
        entry.get("Username") or entry.get("username"),
        entry.get("Password") or entry.get("password"),
    )
    if user and password:
        return Credentials(str(user), str(password))
    if entry.get("IdentityToken"):
        log.add_mask(str(entry["IdentityToken"]))
        log.warning(
            f"{path} holds only an identity token for {host}, which ci-images cannot use; going anonymous"
        )
    return None
