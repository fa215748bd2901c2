"""The kms probe: boto3 CreateKey / Encrypt / Decrypt with an EncryptionContext (a wrong context must be refused);
for a seeded image also every seeded alias."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions
import yaml

from ci_images.engine.service import RunningService
from ci_images.errors import EngineError
from ci_images.smoke.common import (
    Deadline,
    ProbeFailed,
    env_value,
    loopback_session,
    request_timeout,
    require_time,
    wait_until_ready,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

CONTAINER_PORT = 8080
# Credentials and region only sign requests: local-kms accepts any.
_DUMMY_AWS_KEY = "ci-images-smoke"
_KMS_REGION = "eu-west-2"


def port_env(port: int) -> dict[str, str]:
    """local-kms listens on $PORT."""
    return {"PORT": str(port)}


def environment() -> dict[str, str]:
    """What the container is started with: local-kms needs nothing (as SOPS runs it)."""
    return {}


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


def probe(
    service: RunningService, deadline: Deadline, *, env: Mapping[str, str], image_env: list[str]
) -> None:
    """CreateKey, Encrypt/Decrypt with an EncryptionContext; the seeded aliases when the image names a seed file."""
    seed_path = env_value(image_env, "KMS_SEED_PATH")
    url = f"http://{service.host}:{service.port}/"
    session = loopback_session()

    def answers() -> bool:
        # The same read-only call the HEALTHCHECK makes; local-kms answers nothing but POST /.
        response = session.post(
            url,
            data="{}",
            headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"},
            timeout=request_timeout(deadline, 10),
        )
        return response.status_code == 200

    wait_until_ready(service, deadline, f"KMS on {url}", answers)
    aws = boto3.session.Session(
        aws_access_key_id=_DUMMY_AWS_KEY, aws_secret_access_key=_DUMMY_AWS_KEY, region_name=_KMS_REGION
    )
    kms: KMSClient = aws.client(
        "kms",
        endpoint_url=url,
        config=botocore.config.Config(
            connect_timeout=5,
            read_timeout=request_timeout(deadline, 30),
            retries={"max_attempts": 2, "mode": "standard"},
            proxies={},
        ),
    )
    try:
        require_time(deadline, "CreateKey")
        key_id = kms.create_key(Description="ci-images smoke test")["KeyMetadata"]["KeyId"]
        require_time(deadline, "Encrypt/Decrypt")
        _kms_round_trip(kms, key_id)
        if seed_path:
            require_time(deadline, "checking the seeded keys")
            _check_seed(kms, service, seed_path)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ProbeFailed(f"KMS call failed: {exc}") from exc


def _kms_round_trip(kms: KMSClient, key_id: str) -> None:
    plaintext = f"ci-images smoke {secrets.token_hex(8)}".encode()
    # SOPS always encrypts with an EncryptionContext: it must be bound to the ciphertext.
    context = {"ci-images": "smoke", "nonce": secrets.token_hex(4)}
    blob = kms.encrypt(KeyId=key_id, Plaintext=plaintext, EncryptionContext=context)["CiphertextBlob"]
    decrypted = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
    if decrypted != plaintext:
        raise ProbeFailed(f"KMS Decrypt with key {key_id} returned other bytes than were encrypted")
    try:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"ci-images": "wrong"})
    except botocore.exceptions.ClientError:
        return
    raise ProbeFailed(f"KMS Decrypt with key {key_id} ignored a wrong EncryptionContext")


def _check_seed(kms: KMSClient, service: RunningService, seed_path: str) -> None:
    try:
        aliases = seed_aliases(service.read_file(seed_path).decode("utf-8"))
    except (EngineError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise ProbeFailed(
            f"cannot read the seed file KMS_SEED_PATH={seed_path}: {exc}",
            fix="check the KMS_SEED build argument names a file in images/local-kms/seeds/",
        ) from exc
    if not aliases:
        raise ProbeFailed(f"the seed file {seed_path} defines no aliases")
    for alias, key_id in aliases.items():
        try:
            found = kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
        except botocore.exceptions.ClientError as exc:
            raise ProbeFailed(
                f"seeded alias {alias} is missing: {exc}",
                fix=f"check {seed_path} follows local-kms' seed format",
            ) from exc
        if found != key_id:
            raise ProbeFailed(f"seeded alias {alias} points at {found}, the seed file says {key_id}")
        _kms_round_trip(kms, alias)
