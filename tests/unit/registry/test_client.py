"""RegistryClient against small real HTTP servers on 127.0.0.1 (no engine, no registry binary)."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ci_images import oci
from ci_images.errors import RateLimitError, RegistryError, UpstreamUnreachableError, UsageError
from ci_images.log import redact
from ci_images.oci import OCI_MANIFEST
from ci_images.registry.auth import Credentials, parse_www_authenticate
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from ci_images.registry.stream import SizedChunks, SourceInterrupted, checked_chunks
from ci_images.registry.transport import RateLimit, verify_bundle
from ci_images.retry import RetryPolicy, parse_retry_after

Answer = tuple[int, dict[str, str], bytes]
App = Callable[[str, str, dict[str, str], bytes], Answer]
# Secrets registered here must not leak into (or redact) other tests' output.
pytestmark = pytest.mark.usefixtures("secrets")
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05, max_total_s=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _AppServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.command, self.path, headers))
        status, answer_headers, answer = self.server.app(self.command, self.path, headers, body)
        self.send_response(status)
        for key, value in answer_headers.items():
            self.send_header(key, value)
        if "Content-Length" not in answer_headers:
            self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


class _AppServer(ThreadingHTTPServer):
    def __init__(self, app: App) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[Callable[[App], _AppServer]]:
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


def _json(status: int, document: object, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(document).encode()


def _error(status: int, code: str, message: str) -> Answer:
    return _json(status, {"errors": [{"code": code, "message": message}]})


# ---- pure parsing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}, RateLimit(100, 76, 21600)),
        ({"RateLimit-Limit": "200", "RateLimit-Remaining": "0"}, RateLimit(200, 0, None)),
        ({"ratelimit-limit": "", "ratelimit-remaining": ""}, RateLimit(None, None, None)),
        ({"ratelimit-limit": "100;w=", "ratelimit-remaining": "5;w=60"}, RateLimit(100, 5, 60)),
        ({"ratelimit-remaining": "3;w=3600"}, RateLimit(None, 3, 3600)),
        ({"content-type": "x"}, None),
    ],
)
def test_ratelimit_parse(headers: dict[str, str], expected: RateLimit | None) -> None:
    assert RateLimit.parse(headers) == expected


def test_www_authenticate_bearer_keeps_commas_inside_quotes() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull,push"'
    )
    assert parse_www_authenticate(header) == (
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/alpine:pull,push",
        },
    )


def test_www_authenticate_basic() -> None:
    assert parse_www_authenticate('Basic realm="basic-realm"') == ("basic", {"realm": "basic-realm"})


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    now = time.time()
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(
        30, abs=1
    )
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_policy_bounds_attempts_and_total_time() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=2, max_total_s=10)
    first = policy.next_wait(1, 0)
    assert first is not None
    assert 0.5 <= first <= 1
    assert policy.next_wait(2, 0) is not None
    assert policy.next_wait(3, 0) is None  # attempts spent
    assert policy.next_wait(1, 9.9) is None  # time budget spent
    assert policy.next_wait(1, 0, retry_after_s=4) == 4
    assert policy.next_wait(1, 0, retry_after_s=60) is None  # would overrun max_total_s: give up now


def test_credentials_repr_hides_password() -> None:
    creds = Credentials("alice", "hunter2-secret")
    assert "hunter2-secret" not in repr(creds)
    assert redact("token hunter2-secret") == "token ***"


def test_plain_http_only_for_loopback() -> None:
    with pytest.raises(UsageError, match="only allowed for loopback"):
        RegistryClient("ghcr.io", plain_http=True)
    RegistryClient("127.0.0.1:5000", plain_http=True)


def test_certs_d_ca_is_merged_with_the_base_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oci, "CERTS_D", tmp_path / "certs.d")
    base = tmp_path / "system.pem"
    base.write_bytes(b"SYSTEM\n")
    assert verify_bundle("127.0.0.1:5443", base) == str(base)
    (tmp_path / "certs.d" / "127.0.0.1:5443").mkdir(parents=True)
    (tmp_path / "certs.d" / "127.0.0.1:5443" / "ca.crt").write_bytes(b"LAB CA\n")
    merged = verify_bundle("127.0.0.1:5443", base)
    assert Path(merged).read_bytes() == b"SYSTEM\nLAB CA\n"


# ---- retries against a real local server ----------------------------------------------------------------------


def test_429_with_retry_after_then_200(
    serve: Callable[[App], _AppServer], capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([(429, {"Retry-After": "1"}, b""), (200, {}, b"{}")])
    server = serve(lambda *_: next(answers))
    client = RegistryClient(server.host, plain_http=True, retry=FAST)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.9  # Retry-After wins over the 10 ms backoff
    assert client.transport.counters[("GET", "ping")] == 2
    err = capsys.readouterr().err
    assert f"GET http://{server.host}/v2/: 429; retry 1/4 in 1.0 s" in err


def test_503_then_200(serve: Callable[[App], _AppServer], capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter([_error(503, "UNAVAILABLE", "busy"), (200, {"Docker-Content-Digest": "sha256:ab"}, b"")])
    server = serve(lambda *_: next(answers))
    client = RegistryClient(server.host, plain_http=True, retry=FAST)
    info = client.head_manifest("a/b", "v1")
    assert info is not None
    assert info.digest == "sha256:ab"
    assert client.transport.counters[("HEAD", "manifest")] == 2
    assert ": 503; retry 1/4" in capsys.readouterr().err


def test_always_failing_is_bounded_and_raises(serve: Callable[[App], _AppServer]) -> None:
    server = serve(lambda *_: _error(502, "BAD_GATEWAY", "upstream exploded"))
    client = RegistryClient(server.host, plain_http=True, retry=FAST)
    with pytest.raises(
        RegistryError, match=r"502 BAD_GATEWAY: upstream exploded \(gave up after 4 attempts\)"
    ):
        client.list_tags("a/b")
    assert client.request_count == 4


def test_429_beyond_the_time_budget_fails_at_once(serve: Callable[[App], _AppServer]) -> None:
    server = serve(lambda *_: (429, {"Retry-After": "3600"}, b""))
    client = RegistryClient(server.host, plain_http=True, retry=RetryPolicy(max_total_s=2))
    with pytest.raises(RateLimitError, match="gave up after 1 attempts"):
        client.ping()


def test_connection_refused_names_the_host() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    host = f"127.0.0.1:{server.server_address[1]}"
    server.server_close()  # nothing listens there now
    client = RegistryClient(host, plain_http=True, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    with pytest.raises(UpstreamUnreachableError, match=f"registry {host} cannot be reached"):
        client.ping()
    assert client.transport.counters[("GET", "ping")] == 2


# ---- auth flows ---------------------------------------------------------------------------------------------------


def _token_registry(
    serve: Callable[[App], _AppServer], user: str, password: str
) -> tuple[_AppServer, list[str]]:
    """A registry whose realm is on the same server: /token takes basic credentials, /v2/* wants the token."""
    scopes: list[str] = []
    good = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    holder: dict[str, _AppServer] = {}

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.startswith("/token"):
            if headers.get("authorization") != good:
                return _error(401, "UNAUTHORIZED", "bad user or password")
            scopes.append(path)
            return _json(200, {"token": "tok-" + "z" * 20, "expires_in": 300})
        if headers.get("authorization") != "Bearer tok-" + "z" * 20:
            challenge = f'Bearer realm="http://{holder["s"].host}/token",service="unit"'
            return _json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                **{"WWW-Authenticate": challenge},
            )
        if method == "HEAD" and "/manifests/" in path:
            return (
                200,
                {"Docker-Content-Digest": "sha256:cd", "Content-Type": OCI_MANIFEST, "Content-Length": "9"},
                b"",
            )
        return _json(200, {"name": "a/b", "tags": ["v1"]})

    holder["s"] = serve(app)
    return holder["s"], scopes


def test_token_flow_fetches_once_per_scope(serve: Callable[[App], _AppServer]) -> None:
    server, scopes = _token_registry(serve, "alice", "pa55-word")
    client = RegistryClient(
        server.host, credentials=Credentials("alice", "pa55-word"), plain_http=True, retry=FAST
    )
    for _ in range(3):
        info = client.head_manifest("a/b", "v1")
        assert info is not None
        assert info.media_type == OCI_MANIFEST
    assert client.list_tags("a/b") == ["v1"]
    assert client.transport.counters[("GET", "token")] == 1  # pull scope cached across calls and kinds
    assert (
        client.transport.counters[("HEAD", "manifest")] == 4
    )  # one anonymous probe, then three with the token
    assert scopes == ["/token?service=unit&scope=repository%3Aa%2Fb%3Apull"]


def test_token_flow_wrong_password_is_clear_and_redacted(serve: Callable[[App], _AppServer]) -> None:
    server, _ = _token_registry(serve, "alice", "pa55-word")
    client = RegistryClient(server.host, credentials=Credentials("alice", "WRONG-secret"), plain_http=True)
    with pytest.raises(RegistryError) as caught:
        client.head_manifest("a/b", "v1")
    text = str(caught.value)
    assert "WRONG-secret" not in text
    assert "bad user or password" in text
    assert "CI_IMAGES_REGISTRY_USER" in text
    assert "'alice'" in text


def test_basic_challenge_resends_with_credentials(serve: Callable[[App], _AppServer]) -> None:
    good = "Basic " + base64.b64encode(b"bob:b-secret").decode()

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("authorization") != good:
            return 401, {"WWW-Authenticate": 'Basic realm="basic-realm"'}, b""
        return 200, {}, b"{}"

    server = serve(app)
    client = RegistryClient(server.host, credentials=Credentials("bob", "b-secret"), plain_http=True)
    client.ping()
    client.ping()
    assert client.transport.counters[("GET", "ping")] == 3  # only the first call probes anonymously

    anonymous = RegistryClient(server.host, plain_http=True, role="upstream")
    with pytest.raises(RegistryError, match="CI_IMAGES_UPSTREAM_USER"):
        anonymous.ping()
    assert anonymous.request_count == 1  # no pointless resend without credentials


# ---- API shapes ----------------------------------------------------------------------------------------------------


def test_manifest_and_tags_and_upload(serve: Callable[[App], _AppServer]) -> None:
    manifest = b'{"schemaVersion":2}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blobs: dict[str, bytes] = {}
    holder: dict[str, _AppServer] = {}

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        limits = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "99;w=21600"}
        if path == "/v2/a/b/manifests/v1":
            return 200, {"Content-Type": OCI_MANIFEST, **limits}, manifest
        if path == "/v2/a/b/manifests/gone":
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        if path == "/v2/a/b/tags/list?n=1000":
            return _json(200, {"tags": ["1", "2"]}, Link='</v2/a/b/tags/list?n=1000&last=2>; rel="next"')
        if path == "/v2/a/b/tags/list?n=1000&last=2":
            return _json(200, {"tags": ["3"]})
        if path.startswith("/v2/a/b/blobs/sha256:"):
            found = path.rsplit("/", 1)[1] in blobs
            return (200, {}, b"") if found else _error(404, "BLOB_UNKNOWN", "blob unknown")
        if method == "POST" and path == "/v2/a/b/blobs/uploads/":
            return 202, {"Location": "/v2/a/b/blobs/uploads/u1?_state=x"}, b""
        if method == "PUT" and path.startswith("/v2/a/b/blobs/uploads/u1?_state=x&digest="):
            blobs[path.rsplit("=", 1)[1].replace("%3A", ":")] = body
            return 201, {}, b""
        if method == "PUT" and path.startswith("/v2/a/b/manifests/"):
            return 201, {"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}, b""
        return _error(500, "UNEXPECTED", path)

    holder["s"] = server = serve(app)
    client = RegistryClient(server.host, plain_http=True, retry=FAST)
    got = client.get_manifest("a/b", "v1")
    assert got is not None
    assert got[0].digest == digest
    assert got[0].ratelimit == RateLimit(100, 99, 21600)
    assert got[1] == manifest
    assert client.get_manifest("a/b", "gone") is None
    assert client.head_manifest("a/b", "gone") is None
    assert client.list_tags("a/b") == ["1", "2", "3"]

    data = b"layer bytes"
    blob = "sha256:" + hashlib.sha256(data).hexdigest()
    client.upload_blob("a/b", blob, data)
    assert blobs[blob] == data
    client.upload_blob("a/b", blob, data)  # second time: HEAD says it exists
    assert client.count("POST", "upload") == 1
    assert client.count("PUT", "upload") == 1
    assert client.count("HEAD", "blob") == 2

    assert client.put_manifest("a/b", digest, manifest, OCI_MANIFEST) == digest
    with pytest.raises(UsageError, match="cannot store it as"):
        client.put_manifest("a/b", "sha256:" + "0" * 64, manifest, OCI_MANIFEST)


def test_manifest_digest_mismatch_is_an_error(serve: Callable[[App], _AppServer]) -> None:
    server = serve(lambda *_: (201, {"Docker-Content-Digest": "sha256:" + "1" * 64}, b""))
    client = RegistryClient(server.host, plain_http=True)
    with pytest.raises(RegistryError, match="registry stored digest"):
        client.put_manifest("a/b", "v1", b"{}", OCI_MANIFEST)


def test_token_flow_push_scope_for_uploads(serve: Callable[[App], _AppServer]) -> None:
    """Writes need a pull,push token (GHCR, Docker Hub); reads keep their pull token; each is fetched once."""
    holder: dict[str, _AppServer] = {}
    stored: set[str] = set()

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.startswith("/token"):
            push = "pull%2Cpush" in path
            return _json(200, {"access_token": "tok-push-xyz" if push else "tok-pull-xyz"})
        auth = headers.get("authorization", "")
        needed = "Bearer tok-push-xyz" if method in ("POST", "PUT") else None
        if (needed and auth != needed) or not auth.startswith("Bearer tok-"):
            challenge = f'Bearer realm="http://{holder["s"].host}/token",service="unit"'
            return 401, {"WWW-Authenticate": challenge}, b""
        if method == "HEAD" and "/blobs/" in path:
            return (200, {}, b"") if path.rsplit("/", 1)[1] in stored else (404, {}, b"")
        if method == "POST":
            return 202, {"Location": f"http://{holder['s'].host}/v2/a/b/blobs/uploads/u9"}, b""
        if method == "PUT":
            stored.add(path.rsplit("=", 1)[1].replace("%3A", ":"))
            return 201, {}, b""
        return 500, {}, b""

    holder["s"] = server = serve(app)
    client = RegistryClient(
        server.host, credentials=Credentials("u", "p-secret"), plain_http=True, retry=FAST
    )
    for data in (b"one", b"two", b"one"):
        client.upload_blob("a/b", "sha256:" + hashlib.sha256(data).hexdigest(), data)
    assert client.count("GET", "token") == 2  # one pull token (HEADs), one pull,push token (POST/PUT)
    assert client.count("POST", "upload") == client.count("PUT", "upload") == 2
    assert (
        client.count("HEAD", "blob") == 4
    )  # first HEAD probed anonymously, then token known: no more probes


def test_streamed_upload_starts_over_with_a_new_session_when_a_put_fails(
    serve: Callable[[App], _AppServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """A PUT that fails leaves an upload session that cannot take the bytes again: a new POST, the source again."""
    data = b"x" * (3 * (1 << 20) + 17)  # several chunks
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    sessions: list[str] = []
    stored: dict[str, bytes] = {}

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method == "HEAD":
            return _error(404, "BLOB_UNKNOWN", "blob unknown")
        if method == "POST":
            sessions.append(f"u{len(sessions)}")
            return 202, {"Location": f"/v2/a/b/blobs/uploads/{sessions[-1]}?_state=s"}, b""
        if method == "PUT" and "/uploads/u0?" in path:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if method == "PUT":
            assert headers["content-length"] == str(len(data)) and "transfer-encoding" not in headers
            stored[path.rsplit("=", 1)[1].replace("%3A", ":")] = body
            return 201, {"Docker-Content-Digest": digest}, b""
        return _error(500, "UNEXPECTED", path)

    server = serve(app)
    client = RegistryClient(server.host, plain_http=True, retry=FAST)
    opened: list[int] = []

    @contextlib.contextmanager
    def source() -> Iterator[Iterator[bytes]]:
        opened.append(1)
        yield (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))

    assert client.upload_blob_stream("a/b", digest, len(data), source) == "uploaded"
    assert stored == {digest: data}
    assert sessions == ["u0", "u1"] and len(opened) == 2
    assert "starting it again" in capsys.readouterr().err


def test_streamed_upload_gives_up_within_the_retry_budget(serve: Callable[[App], _AppServer]) -> None:
    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST":
            return 202, {"Location": "/v2/a/b/blobs/uploads/u?_state=s"}, b""
        return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")

    client = RegistryClient(serve(app).host, plain_http=True, retry=FAST)
    with pytest.raises(RegistryError, match="failed 4 times; last: 400 DIGEST_INVALID"):
        client.upload_blob("a/b", "sha256:" + "0" * 64, b"data")
    assert client.count("POST", "upload") == client.count("PUT", "upload") == 4


def test_sized_chunks_turn_a_broken_or_short_source_into_source_interrupted() -> None:
    def broken() -> Iterator[bytes]:
        yield b"abc"
        raise ConnectionResetError("peer went away")

    with pytest.raises(SourceInterrupted, match="ConnectionResetError: peer went away"):
        list(SizedChunks(broken(), 10))
    with pytest.raises(SourceInterrupted, match="source gave 3 bytes, expected 10"):
        list(SizedChunks(iter([b"abc"]), 10))
    assert list(SizedChunks(iter([b"ab", b"c"]), 3)) == [b"ab", b"c"]


def test_checked_chunks_verify_size_and_digest() -> None:
    data = [b"hello ", b"world"]
    digest = "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    assert b"".join(checked_chunks(iter(data), "r/x", digest, 11)) == b"hello world"
    with pytest.raises(SourceInterrupted, match="ended after 11 of 12 bytes"):
        list(checked_chunks(iter(data), "r/x", digest, 12))
    with pytest.raises(RegistryError, match="arrived with digest"):
        list(checked_chunks(iter(data), "r/x", "sha256:" + "0" * 64, None))


def test_clients_of_one_pool_share_what_the_host_asked_for(serve: Callable[[App], _AppServer]) -> None:
    """A new thread's client sends credentials (or reuses the token) at once: no second 401, no second token."""
    holder: dict[str, _AppServer] = {}
    seen: list[tuple[str, str]] = []

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        seen.append((path, headers.get("authorization", "")))
        if path.startswith("/token"):
            return _json(200, {"token": "tok-shared-123"})
        if headers.get("authorization") != "Bearer tok-shared-123":
            challenge = f'Bearer realm="http://{holder["s"].host}/token",service="unit"'
            return 401, {"WWW-Authenticate": challenge}, b""
        return 200, {}, b""

    holder["s"] = server = serve(app)
    pool = ClientPool(lambda host: RegistryClient(host, credentials=Credentials("u", "p-x"), plain_http=True))
    pool.get(server.host).ping()
    other = threading.Thread(target=lambda: pool.get(server.host).ping())
    other.start()
    other.join()
    assert [path for path, _ in seen] == ["/v2/", "/token?service=unit", "/v2/", "/v2/"]
    assert pool.count("GET", "token") == 1
    pool.close()


def test_a_thread_refused_while_another_learnt_basic_auth_still_resends(
    serve: Callable[[App], _AppServer],
) -> None:
    """Both threads' first requests go out without credentials; the slower refusal arrives after the other thread
    has learnt the registry wants basic auth. It must still resend with credentials (a shared-state race)."""
    anonymous: list[float] = []
    lock = threading.Lock()
    both_out = threading.Event()

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if "authorization" in headers:
            return 200, {}, b""
        with lock:
            anonymous.append(time.monotonic())
            second = len(anonymous) == 2
        if second:
            both_out.set()
            time.sleep(0.3)  # this refusal arrives after the first thread has learnt "basic"
        else:
            # The first refusal waits for the other thread's anonymous request, however busy the machine: nothing
            # is learnt before both went out, so the race the test is about always happens.
            both_out.wait(timeout=10)
        return 401, {"WWW-Authenticate": 'Basic realm="unit"'}, b""

    server = serve(app)
    pool = ClientPool(lambda host: RegistryClient(host, credentials=Credentials("u", "p-y"), plain_http=True))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def ping() -> None:
        client = pool.get(server.host)
        start.wait()
        try:
            client.ping()
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=ping) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(anonymous) == 2
    pool.close()


# ---- token services: one request per scope at a time, the registry's words, the realm's trust ---------------------


def _slow_token_registry(
    serve: Callable[[App], _AppServer], *, refuse: Callable[[str, str, str], Answer | None] | None = None
) -> tuple[_AppServer, list[str]]:
    """A token registry whose realm takes 0.3 s per token (numbered tok-1, tok-2...); ``refuse(method, path, token)``
    may answer a request with a valid-looking token instead."""
    holder: dict[str, _AppServer] = {}
    issued: list[str] = []
    lock = threading.Lock()

    def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.startswith("/token"):
            time.sleep(0.3)
            with lock:
                issued.append(path)
                number = len(issued)
            return _json(200, {"token": f"tok-{number}", "expires_in": 300})
        token = headers.get("authorization", "").removeprefix("Bearer ")
        realm = f'Bearer realm="http://{holder["s"].host}/token",service="unit"'
        if not token.startswith("tok-"):
            return 401, {"WWW-Authenticate": realm}, b""
        refused = refuse(method, path, token) if refuse else None
        if refused is not None:
            return refused
        return 200, {"Docker-Content-Digest": "sha256:ab"}, b""

    holder["s"] = serve(app)
    return holder["s"], issued


def test_concurrent_first_contacts_wait_for_the_token_in_flight(serve: Callable[[App], _AppServer]) -> None:
    """Six threads meet a token registry at once (each refused anonymously): one token request, not six."""
    server, issued = _slow_token_registry(serve)
    pool = ClientPool(lambda host: RegistryClient(host, credentials=Credentials("u", "p-z"), plain_http=True))
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def head() -> None:
        client = pool.get(server.host)
        start.wait()
        try:
            assert client.head_manifest("a/b", "v1") is not None
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=head) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert issued == ["/token?service=unit&scope=repository%3Aa%2Fb%3Apull"]
    pool.close()


def test_insufficient_scope_is_reported_in_the_registrys_words_without_asking_again(
    serve: Callable[[App], _AppServer],
) -> None:
    def refuse(method: str, path: str, token: str) -> Answer | None:
        if method == "HEAD" and "/blobs/" in path:
            return 404, {}, b""
        if method != "POST":
            return None
        challenge = (
            f'Bearer realm="http://{server.host}/token",service="unit",scope="repository:a/b:pull,push",'
            'error="insufficient_scope"'
        )
        return _json(
            401,
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            **{"WWW-Authenticate": challenge},
        )

    server, issued = _slow_token_registry(serve, refuse=refuse)
    client = RegistryClient(server.host, credentials=Credentials("u", "p-q"), plain_http=True, retry=FAST)
    with pytest.raises(RegistryError) as caught:
        client.upload_blob("a/b", "sha256:" + "0" * 64, b"")
    assert (
        "401 UNAUTHORIZED: authentication required [insufficient_scope for repository:a/b:pull,push]"
        in caught.value.message
    )
    assert [p for p in issued if "pull%2Cpush" in p] == [issued[-1]]  # one pull,push token: not asked again
    assert client.probe_upload("a/b") == (
        "401 UNAUTHORIZED: authentication required [insufficient_scope for repository:a/b:pull,push]"
    )


def test_a_token_the_registry_calls_invalid_is_fetched_again_once(serve: Callable[[App], _AppServer]) -> None:
    """A token revoked or expired early (``error="invalid_token"``): one new token, and the request goes through."""
    uses: list[str] = []

    def refuse(method: str, path: str, token: str) -> Answer | None:
        uses.append(token)
        if uses.count("tok-1") < 2 or token != "tok-1":
            return None
        challenge = f'Bearer realm="http://{server.host}/token",service="unit",error="invalid_token"'
        return 401, {"WWW-Authenticate": challenge}, b""

    server, issued = _slow_token_registry(serve, refuse=refuse)
    client = RegistryClient(server.host, credentials=Credentials("u", "p-r"), plain_http=True, retry=FAST)
    assert client.head_manifest("a/b", "v1") is not None and len(issued) == 1
    assert (
        client.head_manifest("a/b", "v1") is not None
    )  # tok-1 refused: tok-2 fetched, the request sent again
    assert len(issued) == 2 and uses == ["tok-1", "tok-1", "tok-2"]
    assert client.head_manifest("a/b", "v1") is not None and len(issued) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (
            b'{"details": "incorrect username or password"}',
            "application/json",
            "incorrect username or password",
        ),
        (b'{"error": "unauthorized", "error_description": "bad token"}', "application/json", "bad token"),
        (
            b"<html><body>Sign in</body></html>",
            "text/html",
            "text/html (33 bytes): '<html><body>Sign in</body></html>'",
        ),
    ],
)
def test_a_refused_token_request_says_what_the_service_said(
    serve: Callable[[App], _AppServer], body: bytes, content_type: str, says: str
) -> None:
    holder: dict[str, _AppServer] = {}

    def app(method: str, path: str, headers: dict[str, str], answer: bytes) -> Answer:
        if path.startswith("/token"):
            return 401, {"Content-Type": content_type}, body
        return 401, {"WWW-Authenticate": f'Bearer realm="http://{holder["s"].host}/token"'}, b""

    holder["s"] = server = serve(app)
    client = RegistryClient(server.host, credentials=Credentials("u", "p-s"), plain_http=True)
    with pytest.raises(RegistryError) as caught:
        client.ping()
    assert (
        caught.value.message
        == f"token service {server.host} of {server.host} (user 'u', login) refused: 401 {says}"
    )


def test_a_realm_on_another_host_is_trusted_with_the_registrys_certs_d_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oci, "CERTS_D", tmp_path / "certs.d")
    base = tmp_path / "system.pem"
    base.write_bytes(b"SYSTEM\n")
    (tmp_path / "certs.d" / "registry.test:5443").mkdir(parents=True)
    (tmp_path / "certs.d" / "registry.test:5443" / "ca.crt").write_bytes(b"REGISTRY CA\n")
    assert verify_bundle("auth.test", base) == str(base)
    assert (
        Path(verify_bundle("auth.test", base, registry="registry.test:5443")).read_bytes()
        == b"SYSTEM\nREGISTRY CA\n"
    )
    (tmp_path / "certs.d" / "auth.test").mkdir()
    (tmp_path / "certs.d" / "auth.test" / "ca.crt").write_bytes(b"REALM CA")
    both = verify_bundle("auth.test", base, registry="registry.test:5443")
    assert Path(both).read_bytes() == b"SYSTEM\nREALM CA\nREGISTRY CA\n"
    transport = RegistryClient("registry.test:5443").transport
    assert str(tmp_path / "certs.d" / "registry.test:5443" / "ca.crt") in transport._trust_fix("auth.test")
    assert "token service of registry.test:5443" in transport._trust_fix("auth.test")
