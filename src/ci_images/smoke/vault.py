"""The vault probe: hvac against a dev server: transit mounted at ``sops/``, an rsa-4096 key, encrypt and decrypt."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import hvac
import hvac.exceptions
import requests

from ci_images.engine.service import RunningService
from ci_images.log import log
from ci_images.smoke.common import (
    Deadline,
    ProbeFailed,
    loopback_session,
    request_timeout,
    require_time,
    wait_until_ready,
)

CONTAINER_PORT = 8200
VAULT_TRANSIT_PATH = "sops"
TOKEN_ENV = "VAULT_DEV_ROOT_TOKEN_ID"  # noqa: S105  (the name of the variable, not a secret)


def port_env(port: int) -> dict[str, str]:
    """The vault entrypoint passes VAULT_DEV_LISTEN_ADDRESS to ``server -dev``; loopback only on a host network."""
    return {"VAULT_DEV_LISTEN_ADDRESS": f"127.0.0.1:{port}"}


def environment() -> dict[str, str]:
    """Only the root token, as SOPS' tests start it; the token is a fresh secret per run."""
    token = f"ci-images-{secrets.token_urlsafe(18)}"
    log.add_mask(token)
    return {TOKEN_ENV: token}


def probe(
    service: RunningService, deadline: Deadline, *, env: Mapping[str, str], image_env: list[str]
) -> None:
    """Mount transit at sops/, create an rsa-4096 key, encrypt and decrypt with hvac."""
    token = env[TOKEN_ENV]
    url = f"http://{service.host}:{service.port}"
    session = loopback_session()

    def initialised() -> bool:
        response = session.get(f"{url}/v1/sys/init", timeout=request_timeout(deadline, 10))
        return response.status_code == 200 and bool(response.json().get("initialized"))

    wait_until_ready(service, deadline, f"Vault on {url}", initialised)

    def client(step: str) -> Any:
        # A fresh client per step so each call's timeout is what is left of the deadline (clients are cheap).
        require_time(deadline, step)
        return hvac.Client(url=url, token=token, timeout=request_timeout(deadline, 120), session=session)

    key = "sops-smoke"
    plaintext = f"ci-images smoke {secrets.token_hex(8)}".encode()
    try:
        client("mounting transit").sys.enable_secrets_engine(backend_type="transit", path=VAULT_TRANSIT_PATH)
        # rsa-4096 as SOPS' vault tests use; key generation is the slow step under emulation.
        client("creating the rsa-4096 key").secrets.transit.create_key(
            name=key, key_type="rsa-4096", mount_point=VAULT_TRANSIT_PATH
        )
        ciphertext = client("encrypting").secrets.transit.encrypt_data(
            name=key, plaintext=base64.b64encode(plaintext).decode(), mount_point=VAULT_TRANSIT_PATH
        )["data"]["ciphertext"]
        decrypted = client("decrypting").secrets.transit.decrypt_data(
            name=key, ciphertext=ciphertext, mount_point=VAULT_TRANSIT_PATH
        )["data"]["plaintext"]
    except (hvac.exceptions.VaultError, requests.RequestException, KeyError, TypeError) as exc:
        raise ProbeFailed(f"Vault transit call failed: {type(exc).__name__}: {exc}") from exc
    if base64.b64decode(decrypted) != plaintext:
        raise ProbeFailed("Vault transit decrypt returned other bytes than were encrypted")
