"""SOPS' own flows against the tags it pulls, published from the shipped catalog into the lab's target.

getsops/sops kms/keysource_test.go runs local-kms:3.11.1 with no environment, port 8080, retries CreateKey until
the server answers, then encrypts and decrypts data keys (with an encryption context); hcvault/keysource_test.go
runs vault:1.10.0 with only VAULT_DEV_ROOT_TOKEN_ID (no IPC_LOCK), mounts transit at sops/, writes an rsa-4096 key
and encrypts and decrypts with it. The same flows run here with boto3 and hvac, against the rebuilt tags and the
digest-exact mirrors, on amd64 and arm64 (under QEMU here).

Ports: SOPS publishes the container port on a random host port. An engine with a bridge network does the same
here; an engine without one (--bridge=none, as in this lab) runs the container on the host's network, so the
server listens on 8080 / 8200 of this machine itself. Then the port must be free: sessions of these tests take a
file lock per port (they share the machine), and a port something else holds skips the test outside CI and fails
it in CI (CI=true), where it must run.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import hvac
import pytest
import requests

from ci_images.commands import images as image_commands
from ci_images.commands.options import PUSH, Options, parse_options
from ci_images.engine.client import CONTAINER_LABEL, Engine
from ci_images.registry import documents
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.run.result import Result

from .conftest import unavailable

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX_PATH = "getsops/ci-container-images"
# What SOPS pulls today, and the digest-exact mirrors of the same upstream images.
KMS_TAGS = ["local-kms:3.11.1", "mirror/nsmithuk/local-kms:3.11.1"]
VAULT_TAGS = ["vault:1.10.0", "mirror/library/vault:1.10.0"]
PORT_LOCKS = Path("/tmp")
T = TypeVar("T")


@pytest.fixture(scope="module")
def published(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """The shipped catalog's SOPS entries pushed to the lab's target, on both of its platforms: the rebuilt tags
    are assembled (no engine build), the mirrors copied."""
    root = tmp_path_factory.mktemp("consumers")
    env = {**lab.env(), "CI": "true"}
    given = {
        "catalog": str(REPO_ROOT / "images.yaml"),
        "images": ["local-kms/plain/3.11.1", "vault/plain/1.10.0", "local-kms-upstream", "vault-upstream"],
        "lock": str(root / "images.lock.json"),
    }
    options: Options = parse_options(PUSH, given, env)
    results = {f"{r.image}:{r.version}": r for r in image_commands.push_images(options)}
    assert {k: (r.action, r.built) for k, r in results.items()} == {
        "local-kms:3.11.1": ("built", "assembled"),
        "vault:1.10.0": ("built", "assembled"),
        "local-kms-upstream:3.11.1": ("mirrored", "mirror"),
        "vault-upstream:1.10.0": ("mirrored", "mirror"),
    }
    return results


@pytest.fixture(params=["linux/amd64", "linux/arm64"])
def platform(request: pytest.FixtureRequest, engine: Engine) -> str:
    """Each flow on both platforms (arm64 under QEMU on an amd64 host, as SOPS' contributors on arm64 run it)."""
    wanted: str = request.param
    if not engine.can_run(wanted):
        unavailable(f"this host cannot run {wanted} (no QEMU binfmt handler)")
    return wanted


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do (Go's listeners, Python's HTTPServer): connections of an earlier test lingering in
        # TIME_WAIT on the port must not count as the port being taken, only a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104  (what the server in the container will bind)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _host_port(port: int) -> Iterator[None]:
    """Hold ``port`` for one test across every session on this machine; skip (fail in CI) if someone else has it."""
    with (PORT_LOCKS / f"ci-images-consumer-port-{port}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _port_is_free(port):
            unavailable(
                f"port {port} is in use on this machine; SOPS' flow needs it on a host-network engine"
            )
        yield


@contextlib.contextmanager
def run_like_sops(
    engine: Engine, image: str, container_port: int, env: dict[str, str], platform: str
) -> Iterator[str]:
    """Start ``image`` as SOPS' tests do (this environment only, no capabilities added); yield its base URL."""
    options: dict[str, Any] = {
        "name": f"ci-images-consumer-{secrets.token_hex(4)}",
        "platform": platform,
        "detach": True,
        "environment": env,
        "labels": {CONTAINER_LABEL: "1"},
    }
    with contextlib.ExitStack() as stack:
        if engine.network_mode == "host":
            stack.enter_context(_host_port(container_port))
            options["network_mode"] = "host"
        else:
            options["ports"] = {f"{container_port}/tcp": ("127.0.0.1", None)}
        container = engine.client.containers.run(image, **options)
        stack.callback(engine.remove_container, container)
        port = container_port
        if engine.network_mode != "host":
            container.reload()
            port = int(container.attrs["NetworkSettings"]["Ports"][f"{container_port}/tcp"][0]["HostPort"])
        try:
            yield f"http://127.0.0.1:{port}"
        except Exception:
            print(engine.container_logs(container.id)[-3000:])  # shown by pytest with the failure
            raise


def retry(what: str, call: Callable[[], T], *, timeout_s: float = 90.0) -> T:
    """dockertest's pool.Retry: call until it succeeds, backing off, within a time limit."""
    deadline = time.monotonic() + timeout_s
    wait = 0.2
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 3.0)


def pull(engine: Engine, lab: Any, tag: str, platform: str) -> str:
    """The tag's image for ``platform``, pulled by that platform's digest as a consumer pinning the lock file would
    (the engine keeps one image per reference, so the tag alone would not say which platform runs)."""
    repo, name = f"{PREFIX_PATH}/{tag}".rsplit(":", 1)
    client = RegistryClient(
        lab.target.host, credentials=Credentials(lab.target.username, lab.target.password)
    )
    try:
        digest = documents.platform_digests(client, repo, name)[platform]
    finally:
        client.close()
    ref = f"{lab.target.host}/{repo}@{digest}"
    engine.pull(
        ref, platform=platform, auth={"username": lab.target.username, "password": lab.target.password}
    )
    return ref


@pytest.mark.parametrize("tag", KMS_TAGS)
def test_sops_kms_flow_against_local_kms(
    engine: Engine, lab: Any, published: dict[str, Result], tag: str, platform: str
) -> None:
    image = pull(engine, lab, tag, platform)
    with run_like_sops(engine, image, 8080, env={}, platform=platform) as url:

        def client(region: str) -> Any:
            return boto3.client(
                "kms",
                endpoint_url=url,
                region_name=region,
                aws_access_key_id="id",
                aws_secret_access_key="secret",  # as SOPS' createTestMasterKey
            )

        # SOPS creates its key through a client for its dummy ARN's region, retried until the server answers.
        key = retry("CreateKey", lambda: client("us-west-2").create_key())
        arn = key["KeyMetadata"]["Arn"]
        kms = client(arn.split(":")[3])
        context = {"foo": "bar"}
        data_key = b"UFO sightings"
        encrypted = kms.encrypt(KeyId=arn, Plaintext=data_key, EncryptionContext=context)["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=encrypted, EncryptionContext=context)["Plaintext"] == data_key
        with pytest.raises(botocore.exceptions.ClientError, match="InvalidCiphertext"):
            kms.decrypt(CiphertextBlob=encrypted, EncryptionContext={"foo": "baz"})


@pytest.mark.parametrize("tag", VAULT_TAGS)
def test_sops_vault_flow_against_vault(
    engine: Engine, lab: Any, published: dict[str, Result], tag: str, platform: str
) -> None:
    image = pull(engine, lab, tag, platform)
    token = "secret"  # SOPS' testVaultToken
    with run_like_sops(engine, image, 8200, env={"VAULT_DEV_ROOT_TOKEN_ID": token}, platform=platform) as url:
        session = requests.Session()
        session.trust_env = False  # loopback: no proxy from the environment
        # 120 s a call, as the vault probe allows: generating the rsa-4096 key under QEMU (arm64) took over 30 s
        # on the 2-core machine once (SOPS' Go client sets no timeout at all).
        client = hvac.Client(url=url, token=token, session=session, timeout=120)
        assert retry(
            "InitStatus", lambda: client.sys.is_initialized() or _not_yet("Vault is not initialised")
        )
        client.sys.enable_secrets_engine(
            backend_type="transit", path="sops", description="backend transit used by SOPS"
        )
        # createVaultKey: a Logical write of type rsa-4096, then a read.
        client.write("sops/keys/sops-key", type="rsa-4096")
        assert client.read("sops/keys/sops-key")["data"]["type"] == "rsa-4096"
        plaintext = b"it's always DNS"
        ciphertext = client.secrets.transit.encrypt_data(
            name="sops-key", plaintext=base64.b64encode(plaintext).decode(), mount_point="sops"
        )["data"]["ciphertext"]
        decrypted = client.secrets.transit.decrypt_data(
            name="sops-key", ciphertext=ciphertext, mount_point="sops"
        )["data"]["plaintext"]
        assert base64.b64decode(decrypted) == plaintext


def _not_yet(why: str) -> bool:
    raise RuntimeError(why)
