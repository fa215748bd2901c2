"""The checks before a run's work (ci_images.registry.access) against small real HTTP servers on 127.0.0.1: one login
per host, then per repository what the token grants, or an upload session opened and cancelled."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError
from ci_images.registry.access import AccessRefused, check_access
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from tests.unit.registry.test_client import FAST, Answer, App, _AppServer, _error, _json

pytestmark = pytest.mark.usefixtures("secrets")
Serve = Callable[[App], _AppServer]
BOB = "Basic " + base64.b64encode(b"bob:b-secret").decode()
BOB_CREDENTIALS = Credentials("bob", "b-secret")


@pytest.fixture
def serve() -> Iterator[Serve]:
    """test_client's small HTTP servers, started per test."""
    servers: list[_AppServer] = []

    def start(app: App) -> _AppServer:
        server = _AppServer(app)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _pool(credentials: Credentials | None = BOB_CREDENTIALS) -> ClientPool:
    return ClientPool(lambda host: RegistryClient(host, credentials=credentials, plain_http=True, retry=FAST))


def _basic_registry(serve: Serve, *, refuse_uploads: Answer | None = None) -> _AppServer:
    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("authorization") != BOB:
            return 401, {"WWW-Authenticate": 'Basic realm="unit"'}, b""
        if method == "POST" and path.endswith("/blobs/uploads/"):
            repo = path.removeprefix("/v2/").removesuffix("/blobs/uploads/")
            return refuse_uploads or (202, {"Location": f"/v2/{repo}/blobs/uploads/u-1?_state=s"}, b"")
        if method == "DELETE":
            return 204, {}, b""
        return 200, {}, b"{}"

    return serve(app)


def test_basic_auth_signs_in_once_and_opens_and_cancels_one_upload_per_repository(serve: Serve) -> None:
    server = _basic_registry(serve)
    pool = _pool()
    repos = [Repository(server.host, p) for p in ("team/a", "team/a", "team/b")]
    check_access(pool, repos, push=True)
    assert [(m, p) for m, p, _ in server.seen] == [
        ("GET", "/v2/"),  # anonymous: the registry asks for basic auth
        ("GET", "/v2/"),  # the login
        ("POST", "/v2/team/a/blobs/uploads/"),
        ("DELETE", "/v2/team/a/blobs/uploads/u-1?_state=s"),
        ("POST", "/v2/team/b/blobs/uploads/"),
        ("DELETE", "/v2/team/b/blobs/uploads/u-1?_state=s"),
    ]
    check_access(pool, repos)  # signed in already; reading needs nothing more on basic auth
    assert len(server.seen) == 6
    pool.close()


def test_a_refused_upload_is_one_line_in_the_registrys_words(serve: Serve) -> None:
    denied = _error(403, "DENIED", "requested access to the resource is denied")
    server = _basic_registry(serve, refuse_uploads=denied)
    with pytest.raises(AccessRefused) as caught:
        check_access(
            _pool(), [Repository(server.host, "team/a"), Repository(server.host, "team/b")], push=True
        )
    assert caught.value.message == (
        f"user 'bob' may not push to {server.host}/team/a: the registry refused to open an upload: "
        "403 DENIED: requested access to the resource is denied; nothing was built"
    )
    assert caught.value.exit_code == 3
    assert "give user 'bob' write access" in (caught.value.fix or "")
    assert not [p for m, p, _ in server.seen if "team/b" in p]  # the first refusal stops the check


def test_wrong_basic_credentials_fail_one_login(serve: Serve) -> None:
    server = _basic_registry(serve)
    with pytest.raises(RegistryError) as caught:
        check_access(_pool(Credentials("bob", "wrong")), [Repository(server.host, "team/a")], push=True)
    assert "401" in caught.value.message and "user 'bob'" in (caught.value.fix or "")
    assert [(m, p) for m, p, _ in server.seen] == [("GET", "/v2/"), ("GET", "/v2/")]


def _token_registry(
    serve: Serve, grant: Callable[[str], list[dict[str, Any]]] | None
) -> tuple[_AppServer, list[str]]:
    """A registry whose realm hands out JWTs granting ``grant(scope)`` (None: opaque tokens)."""
    holder: dict[str, _AppServer] = {}
    asked: list[str] = []

    def token_for(path: str) -> str:
        scope = path.partition("scope=")[2].replace("%3A", ":").replace("%2F", "/").replace("%2C", ",")
        asked.append(scope)
        if grant is None:
            return "opaque-" + str(len(asked))
        now = int(time.time())
        claims = {"exp": now + 300, "iat": now, "access": grant(scope)}
        return jwt.encode(claims, "unit-test-key-long-enough-for-hs256!", algorithm="HS256")

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.startswith("/token"):
            return _json(200, {"token": token_for(path)})
        if not headers.get("authorization", "").startswith("Bearer "):
            return (
                401,
                {"WWW-Authenticate": f'Bearer realm="http://{holder["s"].host}/token",service="unit"'},
                b"",
            )
        if method == "POST":
            return 202, {"Location": "/v2/team/a/blobs/uploads/u-2"}, b""
        if method == "HEAD" and "/blobs/" in path:
            return 404, {}, b""
        return {"DELETE": (204, {}, b""), "PUT": (201, {}, b"")}.get(method, (200, {}, b"{}"))

    holder["s"] = serve(app)
    return holder["s"], asked


def _pull_only(scope: str) -> list[dict[str, Any]]:
    name = scope.split(":")[1]
    return [{"type": "repository", "name": name, "actions": ["pull"]}]


def test_a_token_without_push_is_refused_without_opening_an_upload(serve: Serve) -> None:
    server, asked = _token_registry(serve, _pull_only)
    with pytest.raises(AccessRefused) as caught:
        check_access(_pool(), [Repository(server.host, "team/a")], push=True)
    assert caught.value.message == (
        f"user 'bob' may not push to {server.host}/team/a: its token service granted no push for "
        "repository:team/a:pull,push; nothing was built"
    )
    assert asked == ["repository:team/a:pull", "repository:team/a:pull,push"]  # the login's, then the check's
    assert not [m for m, _, _ in server.seen if m == "POST"]


def test_a_token_granting_push_is_enough_and_is_kept_for_the_upload(serve: Serve) -> None:
    def everything(scope: str) -> list[dict[str, Any]]:
        return [{"type": "repository", "name": scope.split(":")[1], "actions": ["pull", "push"]}]

    server, asked = _token_registry(serve, everything)
    pool = _pool()
    check_access(pool, [Repository(server.host, "team/a")], push=True)
    assert not [m for m, _, _ in server.seen if m == "POST"]
    assert pool.get(server.host).upload_blob("team/a", "sha256:" + "0" * 64, b"") == "uploaded"
    assert asked == ["repository:team/a:pull", "repository:team/a:pull,push"]  # no second pull,push token
    pool.close()


def test_an_opaque_token_is_checked_by_opening_an_upload(serve: Serve) -> None:
    server, _ = _token_registry(serve, None)
    check_access(_pool(), [Repository(server.host, "team/a")], push=True)
    assert [m for m, _, _ in server.seen if m in ("POST", "DELETE")] == ["POST", "DELETE"]


def test_reading_is_judged_for_signed_in_users_only(serve: Serve) -> None:
    server, asked = _token_registry(serve, lambda scope: [])
    with pytest.raises(
        AccessRefused, match=f"user 'bob' may not read {server.host}/team/a: its token service"
    ):
        check_access(_pool(), [Repository(server.host, "team/a")])
    assert asked == ["repository:team/a:pull"]  # the login's token is the read check's
    check_access(_pool(None), [Repository(server.host, "team/a")])  # anonymous: the plan will tell
