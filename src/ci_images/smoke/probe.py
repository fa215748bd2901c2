"""Smoke probes: run a built image the way SOPS' CI runs it and use it as SOPS does.

kms:   boto3 CreateKey / Encrypt / Decrypt with an EncryptionContext (and a wrong context must be refused); for a
       seeded image also every seeded alias.
vault: hvac against a dev server: transit mounted at ``sops/``, an rsa-4096 key, encrypt and decrypt.
Both:  the image's own HEALTHCHECK command, run inside the container, must exit 0 (proves the check works without
       waiting for the engine's health intervals).

Everything is bounded by one deadline; under QEMU (arm64 on an amd64 host) startup takes far longer than natively.
"""

from __future__ import annotations

import base64
import io
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions
import hvac
import hvac.exceptions
import requests
import yaml

from ci_images.errors import EngineError, SmokeError, UsageError
from ci_images.log import log, redact

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

    from ci_images.engine.client import Engine
    from ci_images.engine.service import RunningService

SMOKE_KINDS: frozenset[str] = frozenset({"kms", "vault"})
DEFAULT_TIMEOUT_S = 180.0
LOG_TAIL_LINES = 60
# Credentials and region only sign requests: local-kms accepts any.
_DUMMY_AWS_KEY = "ci-images-smoke"
_KMS_REGION = "eu-west-2"
VAULT_TRANSIT_PATH = "sops"
_PROBE_ERRORS = (requests.RequestException, botocore.exceptions.BotoCoreError, ValueError)


@dataclass(frozen=True)
class SmokeResult:
    kind: str
    platform: str
    duration_s: float


class _ProbeFailed(Exception):
    """A check failed; becomes a SmokeError that carries the container's logs."""

    def __init__(self, what: str, *, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._end = time.monotonic() + timeout_s

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


# -- pure helpers (unit-tested) ----------------------------------------------------------------------------------


def kms_port_env(port: int) -> dict[str, str]:
    """local-kms listens on $PORT."""
    return {"PORT": str(port)}


def vault_port_env(port: int) -> dict[str, str]:
    """The vault entrypoint passes VAULT_DEV_LISTEN_ADDRESS to ``server -dev``; loopback only on a host network."""
    return {"VAULT_DEV_LISTEN_ADDRESS": f"127.0.0.1:{port}"}


CONTAINER_PORTS: Mapping[str, int] = {"kms": 8080, "vault": 8200}
PORT_ENV: Mapping[str, Callable[[int], dict[str, str]]] = {"kms": kms_port_env, "vault": vault_port_env}


def healthcheck_argv(test: Sequence[str] | None) -> list[str] | None:
    """The argv ``docker exec`` needs for an image's Config.Healthcheck.Test; None when the image has no check.

    ``["CMD", arg...]`` runs as is, ``["CMD-SHELL", cmd]`` through ``/bin/sh -c`` (as the engine does),
    ``["NONE"]`` or nothing means no check.
    """
    if not test:
        return None
    form, *rest = test
    if form == "CMD" and rest:
        return list(rest)
    if form == "CMD-SHELL" and rest:
        return ["/bin/sh", "-c", " ".join(rest)]
    return None


def env_value(env: Sequence[str] | None, name: str) -> str | None:
    """Value of ``name`` in an image's Config.Env list (``["K=V", ...]``)."""
    for item in env or ():
        key, sep, value = item.partition("=")
        if sep and key == name:
            return value
    return None


def seed_aliases(seed_yaml: str) -> dict[str, str]:
    """alias name -> target key id, from a local-kms seed file."""
    data = yaml.safe_load(seed_yaml) or {}
    if not isinstance(data, dict):
        raise TypeError("seed file is not a YAML mapping")
    aliases: dict[str, str] = {}
    for entry in data.get("Aliases") or []:
        if isinstance(entry, dict) and entry.get("AliasName") and entry.get("TargetKeyId"):
            aliases[str(entry["AliasName"])] = str(entry["TargetKeyId"])
    return aliases


# -- the probe ---------------------------------------------------------------------------------------------------


def smoke_test(
    engine: Engine, kind: str, image: str, *, platform: str, timeout_s: float = DEFAULT_TIMEOUT_S
) -> SmokeResult:
    """Start ``image`` (for ``platform``), exercise it as SOPS' tests do, run its HEALTHCHECK; SmokeError if not."""
    if kind not in SMOKE_KINDS:
        raise UsageError(f"unknown smoke test kind {kind!r}", fix=f"use one of {sorted(SMOKE_KINDS)}")
    started = time.monotonic()
    deadline = _Deadline(timeout_s)
    config = engine.image_config(image)
    health = healthcheck_argv((config.get("Healthcheck") or {}).get("Test"))
    if health is None:
        # Mirrored upstream images (local-kms has none) are tested as they are; the client probe still runs.
        log.info(
            f"{kind} smoke test of {image} ({platform}): the image has no HEALTHCHECK; only the client probe runs"
        )
    env: dict[str, str] = {}
    token = ""
    if kind == "vault":
        token = f"ci-images-{secrets.token_urlsafe(18)}"
        log.add_mask(token)
        env["VAULT_DEV_ROOT_TOKEN_ID"] = token

    with engine.run_service(
        image, platform=platform, env=env, container_port=CONTAINER_PORTS[kind], port_env=PORT_ENV[kind]
    ) as service:
        try:
            if kind == "kms":
                _probe_kms(service, deadline, seed_path=env_value(config.get("Env"), "KMS_SEED_PATH"))
            else:
                _probe_vault(service, deadline, token=token)
            if health is not None:
                _run_healthcheck(service, health, deadline)
        except _ProbeFailed as exc:
            raise SmokeError(
                _failure_text(kind, image, platform, exc.what, service.logs(tail=LOG_TAIL_LINES)),
                fix=exc.fix or f"run `docker run --rm {image}` and compare with the logs above",
            ) from exc
    duration = time.monotonic() - started
    log.info(f"smoke {kind} {image} ({platform}): ok in {duration:.1f} s")
    return SmokeResult(kind=kind, platform=platform, duration_s=duration)


def _failure_text(kind: str, image: str, platform: str, what: str, logs: str) -> str:
    shown = (
        "\n".join(f"  | {line}" for line in logs.rstrip().splitlines()[-LOG_TAIL_LINES:]) or "  | <no output>"
    )
    # The vault dev server prints its root token at startup: redact here too, not only when logged.
    return redact(
        f"{kind} smoke test of {image} ({platform}) failed: {what}\n"
        f"container logs (last {LOG_TAIL_LINES} lines):\n{shown}"
    )


def _session() -> requests.Session:
    session = requests.Session()
    # Only loopback is contacted: a machine-wide HTTP(S)_PROXY must not route it elsewhere.
    session.trust_env = False
    return session


def _wait_until_ready(
    service: RunningService, deadline: _Deadline, what: str, probe: Callable[[], bool]
) -> None:
    last_error = "no answer yet"
    while True:
        status = service.status()
        if status in {"exited", "dead"}:
            raise _ProbeFailed(
                f"container {status} (exit code {service.exit_code()}) before {what} answered",
                fix="the service did not start: read its logs above (wrong platform, entrypoint or settings?)",
            )
        try:
            if probe():
                return
            last_error = "answered, but not ready"
        except _PROBE_ERRORS as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if deadline.remaining() <= 0:
            raise _ProbeFailed(
                f"{what} did not answer within {deadline.timeout_s:.0f} s ({last_error})",
                fix="check the logs above; a platform run under QEMU may need a longer timeout",
            )
        time.sleep(min(1.0, deadline.remaining()))


def _require_time(deadline: _Deadline, step: str) -> None:
    if deadline.remaining() <= 0:
        raise _ProbeFailed(
            f"ran out of the {deadline.timeout_s:.0f} s budget before {step}",
            fix="check the logs above; a platform run under QEMU may need a longer timeout",
        )


def _request_timeout(deadline: _Deadline, cap: float) -> float:
    return max(1.0, min(cap, deadline.remaining()))


def _probe_kms(service: RunningService, deadline: _Deadline, *, seed_path: str | None) -> None:
    url = f"http://{service.host}:{service.port}/"
    session = _session()

    def answers() -> bool:
        # The same read-only call the HEALTHCHECK makes; local-kms answers nothing but POST /.
        response = session.post(
            url,
            data="{}",
            headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"},
            timeout=_request_timeout(deadline, 10),
        )
        return response.status_code == 200

    _wait_until_ready(service, deadline, f"KMS on {url}", answers)
    aws = boto3.session.Session(
        aws_access_key_id=_DUMMY_AWS_KEY, aws_secret_access_key=_DUMMY_AWS_KEY, region_name=_KMS_REGION
    )
    kms: KMSClient = aws.client(
        "kms",
        endpoint_url=url,
        config=botocore.config.Config(
            connect_timeout=5,
            read_timeout=_request_timeout(deadline, 30),
            retries={"max_attempts": 2, "mode": "standard"},
            proxies={},
        ),
    )
    try:
        _require_time(deadline, "CreateKey")
        key_id = kms.create_key(Description="ci-images smoke test")["KeyMetadata"]["KeyId"]
        _require_time(deadline, "Encrypt/Decrypt")
        _kms_round_trip(kms, key_id)
        if seed_path:
            _require_time(deadline, "checking the seeded keys")
            _check_seed(kms, service, seed_path)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise _ProbeFailed(f"KMS call failed: {exc}") from exc


def _kms_round_trip(kms: KMSClient, key_id: str) -> None:
    plaintext = f"ci-images smoke {secrets.token_hex(8)}".encode()
    # SOPS always encrypts with an EncryptionContext: it must be bound to the ciphertext.
    context = {"ci-images": "smoke", "nonce": secrets.token_hex(4)}
    blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)["CiphertextBlob"]
    decrypted = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
    if decrypted != plaintext:
        raise _ProbeFailed(f"KMS Decrypt with key {key_id} returned other bytes than were encrypted")
    try:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"ci-images": "wrong"})
    except botocore.exceptions.ClientError:
        return
    raise _ProbeFailed(f"KMS Decrypt with key {key_id} ignored a wrong EncryptionContext")


def _check_seed(kms: KMSClient, service: RunningService, seed_path: str) -> None:
    try:
        aliases = seed_aliases(service.read_file(seed_path).decode("utf-8"))
    except (EngineError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise _ProbeFailed(
            f"cannot read the seed file KMS_SEED_PATH={seed_path}: {exc}",
            fix="check the KMS_SEED build argument names a file in images/local-kms/seeds/",
        ) from exc
    if not aliases:
        raise _ProbeFailed(f"the seed file {seed_path} defines no aliases")
    for alias, key_id in aliases.items():
        try:
            found = kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
        except botocore.exceptions.ClientError as exc:
            raise _ProbeFailed(
                f"seeded alias {alias} is missing: {exc}",
                fix=f"check {seed_path} follows local-kms' seed format",
            ) from exc
        if found != key_id:
            raise _ProbeFailed(f"seeded alias {alias} points at {found}, the seed file says {key_id}")
        _kms_round_trip(kms, alias)


def _probe_vault(service: RunningService, deadline: _Deadline, *, token: str) -> None:
    url = f"http://{service.host}:{service.port}"
    session = _session()

    def initialised() -> bool:
        response = session.get(f"{url}/v1/sys/init", timeout=_request_timeout(deadline, 10))
        return response.status_code == 200 and bool(response.json().get("initialized"))

    _wait_until_ready(service, deadline, f"Vault on {url}", initialised)

    def client(step: str) -> Any:
        # A fresh client per step so each call's timeout is what is left of the deadline (clients are cheap).
        _require_time(deadline, step)
        return hvac.Client(url=url, token=token, timeout=_request_timeout(deadline, 120), session=session)

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
        raise _ProbeFailed(f"Vault transit call failed: {type(exc).__name__}: {exc}") from exc
    if base64.b64decode(decrypted) != plaintext:
        raise _ProbeFailed("Vault transit decrypt returned other bytes than were encrypted")


def _run_healthcheck(service: RunningService, argv: list[str], deadline: _Deadline) -> None:
    # At least a few seconds even when the probes used up the budget: the service answered, this is quick.
    exit_code, output = service.exec(argv, timeout_s=max(5.0, deadline.remaining()))
    if exit_code != 0:
        shown = io.StringIO()
        for line in output.rstrip().splitlines()[-20:]:
            shown.write(f"\n  > {line}")
        outcome = "timed out" if exit_code is None else f"exited {exit_code}"
        raise _ProbeFailed(
            f"the image's HEALTHCHECK {argv!r} {outcome} although the service answered{shown.getvalue()}",
            fix="fix the HEALTHCHECK in the image's Dockerfile (it must work with busybox only)",
        )
