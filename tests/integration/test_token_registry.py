"""The lab's token registry (Debian's docker-registry with ``auth: token`` and the lab's token service as its realm on
another host name) against the real registry, the engine and the tool's RegistryClient.

The tool's commands against it (push, mirror, sign, the checks before building) are in test_token_push.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker.errors
import jwt
import pytest
import requests

from ci_images.engine.client import Engine
from ci_images.errors import RegistryError
from ci_images.lab.lab import Lab
from ci_images.lab.token_registry import TokenRegistry
from ci_images.lab.tokens import SERVICE, Fault, Scope, Style, TokenService
from ci_images.oci import OCI_CONFIG, OCI_MANIFEST, certs_d_ca
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.retry import RetryPolicy
from tests.doors import clean_env, run_door
from tests.integration.conftest import TOKEN_READER, TOKEN_WRITER, vault_catalog

pytestmark = pytest.mark.integration
FAST = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.05, max_total_s=5)
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _repo() -> str:
    return f"getsops/tok-{secrets.token_hex(4)}"


def _scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


def _push_tiny_image(client: RegistryClient, repo: str, tag: str) -> str:
    """A config and a manifest (no layers) pushed with the client; returns the manifest's digest."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    config_digest = "sha256:" + hashlib.sha256(config.encode()).hexdigest()
    client.upload_blob(repo, config_digest, config.encode())
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [],
        }
    ).encode()
    return client.put_manifest(repo, tag, manifest, OCI_MANIFEST)


def _bearer(token_registry: TokenRegistry, path: str, token: str, method: str = "GET") -> requests.Response:
    return requests.request(
        method,
        f"https://{token_registry.host}{path}",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(token_registry.ca_bundle),
        timeout=10,
    )


# -- the registry accepts the service's tokens, and only those ------------------------------------------------------


def test_registry_challenges_with_a_realm_on_another_host(token_registry: TokenRegistry) -> None:
    resp = requests.get(
        f"https://{token_registry.host}/v2/", verify=str(token_registry.ca_bundle), timeout=10
    )
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge == f'Bearer realm="{token_registry.tokens.realm}",service="{SERVICE}"'
    realm_host = urlsplit(token_registry.tokens.realm).netloc
    assert realm_host.split(":")[0] == "localhost" != token_registry.host.split(":")[0]
    assert not certs_d_ca(realm_host).parent.exists()  # only the registry's host has the CA in certs.d


def test_expired_token_is_refused(token_registry: TokenRegistry) -> None:
    repo = _repo()
    pull = [Scope("repository", repo, frozenset({"pull"}))]
    fresh = token_registry.tokens.mint(TOKEN_WRITER, pull)
    assert _bearer(token_registry, f"/v2/{repo}/tags/list", fresh).status_code == 404  # let in: no such repo
    # distribution tolerates 60 s past exp (token.go, Leeway): this one ended 70 s ago.
    expired = token_registry.tokens.mint(TOKEN_WRITER, pull, lifetime_s=30, issued_at=time.time() - 100)
    resp = _bearer(token_registry, f"/v2/{repo}/tags/list", expired)
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    foreign = token_registry.tokens.mint(TOKEN_WRITER, pull, audience="another-registry")
    assert _bearer(token_registry, f"/v2/{repo}/tags/list", foreign).status_code == 401


def test_ungranted_scope_is_left_out_and_refused_as_insufficient_scope(
    token_registry: TokenRegistry, token_service: TokenService
) -> None:
    repo = _repo()
    answer = requests.get(
        token_service.realm,
        params={"service": SERVICE, "scope": _scope(repo, "pull,push")},
        auth=(TOKEN_READER, token_service.accounts[TOKEN_READER].password),
        verify=str(token_registry.ca_bundle),
        timeout=10,
    ).json()
    claims = jwt.decode(answer["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull"]}]
    resp = _bearer(token_registry, f"/v2/{repo}/blobs/uploads/", answer["token"], method="POST")
    assert resp.status_code == 401
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    # distribution names the actions in either order (it collects them in a set)
    assert re.search(f'scope="repository:{repo}:(pull,push|push,pull)"', resp.headers["WWW-Authenticate"])


# -- the tool's RegistryClient as it is today ----------------------------------------------------------------------


@pytest.mark.parametrize("style", list(Style))
def test_each_answer_style_works_with_the_registry_client(
    token_registry: TokenRegistry, token_service: TokenService, style: Style
) -> None:
    token_service.style = style
    repo = _repo()
    writer = token_registry.client(TOKEN_WRITER)
    digest = _push_tiny_image(writer, repo, "1.0")
    info = writer.head_manifest(repo, "1.0")
    assert info is not None
    assert info.digest == digest
    reader = token_registry.client(TOKEN_READER)
    assert reader.list_tags(repo) == ["1.0"]
    got = reader.get_manifest(repo, digest)
    assert got is not None
    assert got[0].digest == digest
    assert {r.answer for r in token_service.requests()} == {str(style)}
    # One token per scope while it is valid: the writer's HEAD (pull) and the reader's two reads (pull) each
    # fetched one, and the upload's pull,push one served both PUTs.
    assert token_service.count(_scope(repo, "pull"), user=TOKEN_WRITER) == 1
    assert token_service.count(_scope(repo, "pull,push"), user=TOKEN_WRITER) == 1
    assert token_service.count(_scope(repo, "pull"), user=TOKEN_READER) == 1


def test_short_lived_tokens_are_fetched_again(
    token_registry: TokenRegistry, token_service: TokenService
) -> None:
    token_service.set_lifetime(5)
    repo = _repo()
    client = token_registry.client(TOKEN_WRITER)
    _push_tiny_image(client, repo, "1.0")
    assert client.head_manifest(repo, "1.0") is not None
    assert token_service.count(_scope(repo, "pull"), user=TOKEN_WRITER) == 1
    time.sleep(5.5)  # the client keeps a token max(lifetime - 10 s, 5 s)
    assert client.head_manifest(repo, "1.0") is not None
    assert token_service.count(_scope(repo, "pull"), user=TOKEN_WRITER) == 2


def test_wrong_password_is_a_registry_error(
    token_registry: TokenRegistry, token_service: TokenService
) -> None:
    client = RegistryClient(
        token_registry.host,
        credentials=Credentials(TOKEN_WRITER, "not-the-password"),
        ca_bundle=token_registry.ca_bundle,
    )
    with pytest.raises(RegistryError) as caught:
        client.ping()
    assert f"token service {urlsplit(token_service.realm).netloc}" in caught.value.message
    assert f"user {TOKEN_WRITER!r}" in caught.value.message
    assert "401" in caught.value.message
    assert "incorrect username or password" in caught.value.message
    assert "not-the-password" not in str(caught.value)
    assert [(r.status, r.answer) for r in token_service.requests()] == [(401, "refused")]


def test_read_only_namespace_push_names_insufficient_scope(
    token_registry: TokenRegistry, token_service: TokenService
) -> None:
    """The registry's own words: 401 UNAUTHORIZED with its message, and the challenge's insufficient_scope with the
    scope it wanted; the token (granted pull only) is not asked for again: the service gave what it will."""
    reader = token_registry.client(TOKEN_READER)
    repo = _repo()
    with pytest.raises(RegistryError) as caught:
        _push_tiny_image(reader, repo, "1.0")
    assert re.search(  # the challenge's words as the registry wrote them: its actions in either order
        rf"401 UNAUTHORIZED: authentication required \[insufficient_scope for repository:{repo}:(pull,push|push,pull)\]",
        caught.value.message,
    )
    assert token_service.count(_scope(repo, "pull,push"), user=TOKEN_READER) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault.HTML,
        Fault.SERVER_ERROR,
        Fault.NO_TOKEN,
    ],
)
def test_each_token_service_fault_is_a_registry_error(
    token_registry: TokenRegistry, token_service: TokenService, fault: Fault
) -> None:
    client = token_registry.client(TOKEN_WRITER, retry=FAST)
    with token_service.faulty(fault), pytest.raises(RegistryError) as caught:
        client.head_manifest(_repo(), "1.0")
    message = caught.value.message
    assert urlsplit(token_service.realm).netloc in message  # it names the token service
    assert {  # and says what it answered
        Fault.HTML: "answered 200 with text/html; charset=utf-8 (",
        Fault.SERVER_ERROR: "500 text/plain; charset=utf-8 (22 bytes): 'internal server error' (gave up after",
        Fault.NO_TOKEN: "answered without a token: nothing issued for this account",
    }[fault] in message
    if fault is Fault.HTML:
        assert "Wi-Fi login required" in message
    assert token_service.count() == (FAST.max_attempts if fault is Fault.SERVER_ERROR else 1)


def test_the_realm_is_trusted_through_the_registrys_certs_d(
    token_registry: TokenRegistry, token_service: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    if token_registry.registry.installed_ca is None:
        pytest.skip("the lab CA could not be installed in certs.d (not root)")
    monkeypatch.setenv("SSL_CERT_FILE", SYSTEM_BUNDLE)  # the system's CAs: no lab CA but certs.d's
    token_registry.client(TOKEN_WRITER, lab_bundle=False).ping()


# -- the engine ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_engine_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-file image (FROM scratch, no RUN): built in a second, nothing to pull."""
    context = tmp_path_factory.mktemp("tiny-image")
    (context / "hello.txt").write_text(secrets.token_hex(16), encoding="utf-8")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n", encoding="utf-8")
    tag = f"ci-images-token-test-{secrets.token_hex(4)}:latest"
    client: Any = engine.client
    client.images.build(path=str(context), tag=tag, network_mode="host", pull=False, rm=True)
    yield tag
    engine.remove_image(tag)


def _engine_push(client: Any, ref: str, auth: dict[str, str]) -> list[str]:
    """Push ``ref`` and return the engine's error lines (none when it worked)."""
    repository, _, tag = ref.rpartition(":")
    lines = client.images.push(repository, tag=tag, auth_config=auth, stream=True, decode=True)
    return [str(line.get("error")) for line in lines if line.get("error")]


def test_engine_logs_in_pushes_and_pulls_through_the_token_service(
    engine: Engine, token_registry: TokenRegistry, token_service: TokenService, tiny_engine_image: str
) -> None:
    """The engine's own token flow against a realm on another host name.

    It proves the flow (basic auth to the realm, scopes, the registry accepting the tokens), not the realm's trust:
    dockerd treats 127.0.0.0/8 as insecure registries and skips TLS verification for them and for their realm
    (moby registry/config.go, loadInsecureRegistries), so no loopback lab can show how it trusts a realm.
    """
    client: Any = engine.client
    repo = _repo()
    ref = f"{token_registry.host}/{repo}:1.0"
    writer = {"username": TOKEN_WRITER, "password": token_service.accounts[TOKEN_WRITER].password}
    reader = {"username": TOKEN_READER, "password": token_service.accounts[TOKEN_READER].password}
    assert client.login(registry=token_registry.host, reauth=True, **writer)["Status"] == "Login Succeeded"
    with pytest.raises(docker.errors.APIError):
        client.login(registry=token_registry.host, reauth=True, username=TOKEN_WRITER, password="wrong")
    denied_ref = f"{token_registry.host}/{_repo()}:1.0"
    for each in (ref, denied_ref):
        client.images.get(tiny_engine_image).tag(each)
    try:
        assert _engine_push(client, ref, writer) == []
        assert token_service.count(_scope(repo, "pull,push"), user=TOKEN_WRITER) >= 1
        denied = _engine_push(client, denied_ref, reader)
        print(f"engine push as a reader: {denied}")
        assert denied  # a reader may not push
        client.images.remove(ref)
        pulled = client.images.pull(f"{token_registry.host}/{repo}", tag="1.0", auth_config=reader)
        assert pulled.id == client.images.get(tiny_engine_image).id
        assert token_service.count(_scope(repo, "pull"), user=TOKEN_READER) >= 1
    finally:
        for each in (ref, denied_ref):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(each)


# -- the tool's door, as a user runs it ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.HTML,
        Fault.SERVER_ERROR,
        Fault.NO_TOKEN,
    ],
)
def test_plan_with_a_faulty_token_service_exits_3_naming_it(
    lab: Lab, token_registry: TokenRegistry, token_service: TokenService, fault: Fault, tmp_path: Path
) -> None:
    env = clean_env(
        **{
            **lab.env(),  # the lab's upstream; the token registry as the target
            "CI_IMAGES_REGISTRY": f"{token_registry.host}/getsops/ci-container-images",
            "CI_IMAGES_REGISTRY_USER": TOKEN_WRITER,
            "CI_IMAGES_REGISTRY_PASSWORD": token_service.accounts[TOKEN_WRITER].password,
            "SSL_CERT_FILE": str(token_registry.ca_bundle),
            "REQUESTS_CA_BUNDLE": str(token_registry.ca_bundle),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
    )
    with token_service.faulty(fault):
        done = run_door("module", ["plan", "--catalog", str(vault_catalog(tmp_path))], env, timeout=120)
    assert done.returncode == 3, done.stderr
    assert urlsplit(token_service.realm).netloc in done.stdout + done.stderr
    assert "internal error" not in done.stderr
    assert token_service.accounts[TOKEN_WRITER].password not in done.stdout + done.stderr
