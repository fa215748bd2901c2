"""The bad-input corpus: hostile or broken catalogs, arguments, environment values and output paths.

Every case runs `push-images` (the command that would build and publish) through the door and must end with exit 2,
one line that says what is wrong (and where, for a catalog: file:line:column), no traceback, and no call to the
engine or a registry: DOCKER_HOST, the target and the upstream mirror all point at listeners that count connections.

A target whose token service fails (an HTML page, a 500, an answer without a token, a wrong password) is not bad
input but a registry error: exit 3, one line naming the token service, no traceback, nothing else contacted.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ci_images.catalog import yamlmarks
from ci_images.catalog.load import load_catalog
from ci_images.cli.argv import main
from ci_images.errors import CatalogError
from ci_images.lab.https import Answer, HttpsServer
from ci_images.lab.tokens import SERVICE, Account, Fault, Level, TokenService
from ci_images.loopback.certs import CertificateAuthority
from ci_images.registry import transport
from ci_images.retry import RetryPolicy
from ci_images.smoke import KINDS

DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
GOOD = """\
images:
  vault:
    source: docker.io/hashicorp/vault
    versions: ["1.14.10"]
    build: img
    smoke: vault
"""
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)


@dataclass
class Listeners:
    """A TCP port standing in for every registry and a unix socket standing in for the engine; both count calls."""

    port: int
    docker_socket: Path
    calls: list[str] = field(default_factory=list)


def _serve(sock: socket.socket, name: str, calls: list[str], stop: threading.Event) -> None:
    sock.settimeout(0.01)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except (TimeoutError, OSError):
            continue
        calls.append(name)
        conn.close()


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[Listeners]:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    docker_socket = tmp_path / "docker.sock"
    unix.bind(str(docker_socket))
    unix.listen()
    found = Listeners(port=tcp.getsockname()[1], docker_socket=docker_socket)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_serve, args=(tcp, "registry", found.calls, stop), daemon=True),
        threading.Thread(target=_serve, args=(unix, "engine", found.calls, stop), daemon=True),
    ]
    for thread in threads:
        thread.start()
    yield found
    stop.set()
    for thread in threads:
        thread.join()
    tcp.close()
    unix.close()


@dataclass(frozen=True)
class Case:
    name: str
    catalog: str | bytes = GOOD
    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    says: str = ""
    at: tuple[int, int] | None = None  # (line, column) in the catalog
    files: tuple[tuple[str, str], ...] = ()  # extra files to write next to the catalog


def image(extra: str) -> str:
    return GOOD + extra


CASES = [
    # -- hostile YAML ---------------------------------------------------------------------------------------------
    Case("billion laughs", LAUGHS, says="expands to more than", at=(1, 11)),
    Case(
        "unknown local tag",
        "images: !vault x\n",
        says="could not determine a constructor for the tag '!vault'",
        at=(1, 9),
    ),
    Case("int tag on a word", "images:\n  a: !!int ten\n", says="cannot read 'ten' as int", at=(2, 6)),
    Case(
        "timestamp tag on a word",
        "images:\n  a: !!timestamp x\n",
        says="cannot read 'x' as timestamp",
        at=(2, 6),
    ),
    Case(
        "a 5000-digit integer",
        "ratelimit_min_remaining: " + "9" * 5000 + "\nimages: {}\n",
        says="as int",
        at=(1, 26),
    ),
    Case("recursive alias", "images: &x\n  a: *x\n", says="refers to a value that contains it", at=(1, 9)),
    Case("nesting 200 deep", "images: " + "[" * 200 + "]" * 200 + "\n", says="nested more than", at=(1, 40)),
    Case(
        "undecodable byte",
        b"images:\n  vault:\n    source: \xff\n",
        says="byte 0xff is not UTF-8",
        at=(3, 13),
    ),
    Case("a NUL character", "images:\n  vault: \x00\n", says="control character #x0000", at=(2, 10)),
    Case("merge of a scalar", "images:\n  vault:\n    <<: 1\n", says="expected a mapping", at=(3, 9)),
    Case(
        "a sequence as key", "images:\n  ? [a]\n  : 1\n", says="mapping key must be a plain string", at=(2, 5)
    ),
    Case(
        "unclosed quote", 'images:\n  vault:\n    source: "docker.io/x\n', says="YAML syntax error", at=(4, 1)
    ),
    Case("more than 1 MiB", "#" * (1 << 20) + "\nimages: {}\n", says="the limit is 1048576 bytes"),
    # -- valid YAML, wrong catalog --------------------------------------------------------------------------------
    Case(
        "unquoted date version",
        GOOD.replace('["1.14.10"]', "[2024-01-01]"),
        says='not a date 2024-01-01; fix: quote it: "2024-01-01"',
        at=(4, 16),
    ),
    Case("unquoted 1.10", GOOD.replace('["1.14.10"]', "[1.10]"), says='quote it: "1.10"', at=(4, 16)),
    Case(
        "lock_file outside the repository",
        "lock_file: /etc/passwd\n" + GOOD,
        says="must be a .json file",
        at=(1, 12),
    ),
    Case(
        "lock_file climbing out",
        "lock_file: ../x.json\n" + GOOD,
        says="inside the catalog's folder",
        at=(1, 12),
    ),
    Case("unknown key", image("    smoek: vault\n"), says="unknown key 'smoek'", at=(7, 5)),
    Case("duplicate key", image("    smoke: kms\n"), says="duplicate key 'smoke'", at=(7, 5)),
    Case(
        "bad catalog platform",
        "platforms: [linux/amd65]\n" + GOOD,
        says="unknown architecture 'amd65'",
        at=(1, 13),
    ),
    Case(
        "unknown smoke kind",
        GOOD.replace("smoke: vault", "smoke: redis"),
        says="unknown smoke kind 'redis'",
        at=(6, 12),
    ),
    Case(
        "missing build folder",
        GOOD.replace("build: img", "build: nowhere"),
        says="does not exist",
        at=(5, 12),
    ),
    Case(
        "unpinned Dockerfile",
        GOOD,
        files=(("img/Dockerfile", "FROM alpine\n"),),
        says="cannot be pinned",
        at=(5, 12),
    ),
    Case("a list, not a mapping", "- images\n", says="must be a mapping", at=(1, 1)),
    Case("empty file", "", says="must be a mapping"),
    # -- arguments ------------------------------------------------------------------------------------------------
    Case("unknown platform", argv=("--platform", "linux/amd65"), says="unknown architecture 'amd65'"),
    Case("no jobs", argv=("--jobs", "0"), says="--jobs '0': must be 1 or more"),
    Case("jobs not a number", argv=("--jobs", "abc"), says="not a whole number"),
    Case("a glob matching nothing", argv=("--images", "vault,typo"), says="--images typo matches nothing"),
    Case("an empty glob", argv=("--images", ""), says="an empty pattern"),
    Case("an empty registry", argv=("--registry", ""), says="--registry '': must not be empty"),
    Case("a registry without a path", argv=("--registry", "ghcr.io"), says="names a host without a path"),
    Case(
        "a local registry on no port",
        argv=("--registry", "local:99999"),
        says="--registry 'local:99999': no such",
    ),
    Case(
        "plain HTTP to a real registry", argv=("--registry", "ghcr.io/a/b", "--plain-http"), says="loopback"
    ),
    Case("an empty catalog path", argv=("--catalog", ""), says="--catalog '': must not be empty"),
    Case("negative quota threshold", argv=("--ratelimit-min-remaining", "-1"), says="not a whole number"),
    Case("contradictory modes", argv=("--matrix", "--push"), says="cannot be used together"),
    # -- environment ----------------------------------------------------------------------------------------------
    Case(
        "plain HTTP setting not yes/no",
        env=(("CI_IMAGES_PLAIN_HTTP", "maybe"),),
        says="CI_IMAGES_PLAIN_HTTP 'maybe'",
    ),
    Case("user without password", env=(("CI_IMAGES_REGISTRY_USER", "me"),), says="must be set together"),
    Case(
        "a local registry port that is not one",
        env=(("CI_IMAGES_REGISTRY", "local:abc"),),
        says="CI_IMAGES_REGISTRY 'local:abc': no such port",
    ),
    Case(
        "plain-HTTP mirror not on loopback",
        env=(("CI_IMAGES_UPSTREAM_MIRROR", "http://mirror.example.com"),),
        says="plain HTTP is only allowed for loopback",
    ),
    Case(
        "upstream user without password",
        env=(("CI_IMAGES_UPSTREAM_USER", "me"),),
        says="must be set together",
    ),
]
OUTPUT_CASES = [
    "json is a directory",
    "lock is a directory",
    "corrupt lock file",
    "lock file of another version",
]


def _run(
    tmp_path: Path,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
    extra_argv: tuple[str, ...] = (),
) -> tuple[int, Path]:
    catalog = tmp_path / "images.yaml"
    (tmp_path / "img").mkdir(exist_ok=True)
    (tmp_path / "img" / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    for name, text in case.files:
        (tmp_path / name).write_text(text, encoding="utf-8")
    data = case.catalog if isinstance(case.catalog, bytes) else case.catalog.encode()
    catalog.write_bytes(data)
    for key in [k for k in os.environ if k.startswith(("CI_IMAGES_", "GITHUB_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{listeners.docker_socket}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CI_IMAGES_REGISTRY", f"127.0.0.1:{listeners.port}/ci")
    monkeypatch.setenv("CI_IMAGES_UPSTREAM_MIRROR", f"127.0.0.1:{listeners.port}")
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    argv = [
        "ci" if "--matrix" in case.argv else "push-images",
        "--catalog",
        str(catalog),
        *case.argv,
        *extra_argv,
    ]
    if "--catalog" in case.argv:
        argv = [argv[0], *case.argv]
    return main(argv), catalog


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_before_the_engine_or_any_registry(
    case: Case,
    tmp_path: Path,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, catalog = _run(tmp_path, listeners, monkeypatch, case)
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.says in lines[0], err
    if case.at is not None:
        assert f"{catalog}:{case.at[0]}:{case.at[1]}: " in lines[0], err
    assert "Traceback" not in err and out == ""
    time.sleep(0.05)  # a connection attempt would have been accepted by now
    assert listeners.calls == []


@pytest.mark.parametrize("which", OUTPUT_CASES)
def test_bad_outputs_are_refused_before_anything_runs(
    which: str,
    tmp_path: Path,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    lock = tmp_path / "images.lock.json"
    extra: tuple[str, ...] = {
        "json is a directory": ("--json", str(folder)),
        "lock is a directory": ("--lock", str(folder)),
        "corrupt lock file": ("--lock", str(lock)),
        "lock file of another version": ("--lock", str(lock)),
    }[which]
    if which == "corrupt lock file":
        lock.write_text('{"version": 1, "images": {', encoding="utf-8")
    if which == "lock file of another version":
        lock.write_text('{"version": 99, "images": {}}', encoding="utf-8")
    code, _ = _run(tmp_path, listeners, monkeypatch, Case(which), extra)
    _, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert {"json is a directory": "is a directory", "lock is a directory": "is a directory"}.get(
        which, "lock file"
    ) in err
    time.sleep(0.05)
    assert listeners.calls == []


def test_billion_laughs_stops_at_the_node_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader counts values as aliases expand and stops at the bound, not after a billion of them."""
    path = tmp_path / "images.yaml"
    path.write_text(LAUGHS, encoding="utf-8")
    with pytest.raises(CatalogError, match=f"expands to more than {yamlmarks.MAX_NODES} values"):
        load_catalog(path, smoke_kinds=KINDS)
    monkeypatch.setattr(yamlmarks, "MAX_NODES", 50)
    with pytest.raises(CatalogError, match="expands to more than 50 values"):
        load_catalog(path, smoke_kinds=KINDS)


def test_limits_are_what_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    for number in (yamlmarks.MAX_BYTES, yamlmarks.MAX_DEPTH, yamlmarks.MAX_NODES):
        assert f"{number:,}" in readme or str(number) in readme


# -- token service faults: registry errors, one line each ---------------------------------------------------------


@dataclass
class TokenTarget:
    """A registry on 127.0.0.1 whose every answer is a Bearer challenge naming the lab's token service (a realm on
    ``localhost``, another host), both over TLS from one CA; a test makes the service fail."""

    host: str
    service: TokenService
    ca_bundle: Path


@pytest.fixture(scope="module")
def token_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenTarget]:
    root = tmp_path_factory.mktemp("token-target")
    ca = CertificateAuthority.create(root / "ca")
    service = TokenService(
        root / "tokens", ca, accounts={"ci-writer": Account("pw-7d1f0e", {"ci": Level.WRITE})}
    )
    challenge = {"WWW-Authenticate": f'Bearer realm="{service.realm}",service="{SERVICE}"'}
    refusal = b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}'

    def v2(method: str, params: object, authorization: str | None) -> Answer:
        return 401, {"Content-Type": "application/json", **challenge}, refusal

    registry = HttpsServer(("127.0.0.1", 0), ca.issue_server_cert(root / "registry"), {"/v2/": v2})
    bundle = root / "bundle.pem"
    bundle.write_bytes(ca.cert_path.read_bytes())
    yield TokenTarget(f"127.0.0.1:{registry.port}", service, bundle)
    registry.stop()
    service.stop()


TOKEN_FAULTS = {
    "token service answers an HTML page": (Fault.HTML, "answered 200 with text/html; charset=utf-8 ("),
    "token service fails with 500": (Fault.SERVER_ERROR, ": 500 text/plain; charset=utf-8 (22 bytes)"),
    "token service answers without a token": (Fault.NO_TOKEN, "answered without a token: nothing issued"),
    "token service refuses the password": (None, "refused: 401 incorrect username or password"),
}


@pytest.mark.parametrize("which", list(TOKEN_FAULTS))
def test_token_faults_are_registry_errors_in_one_line(
    which: str,
    token_target: TokenTarget,
    tmp_path: Path,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fault, says = TOKEN_FAULTS[which]
    fast = RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02, max_total_s=5)
    monkeypatch.setattr(transport, "RetryPolicy", lambda: fast)  # the 500 is retried, briefly
    env = (
        ("CI_IMAGES_REGISTRY", f"{token_target.host}/ci"),
        ("CI_IMAGES_REGISTRY_USER", "ci-writer"),
        ("CI_IMAGES_REGISTRY_PASSWORD", "pw-7d1f0e" if fault else "not-the-password"),
        ("SSL_CERT_FILE", str(token_target.ca_bundle)),
    )
    token_target.service.reset()
    if fault is None:
        code, _ = _run(tmp_path, listeners, monkeypatch, Case(which, env=env), ("--force",))
    else:
        with token_target.service.faulty(fault):
            code, _ = _run(tmp_path, listeners, monkeypatch, Case(which, env=env), ("--force",))
    out, err = capsys.readouterr()
    assert code == 3, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert (
        f"token service {token_target.service.host} of {token_target.host} (user 'ci-writer'" in lines[0]
    ), err
    assert says in lines[0], err
    assert "Traceback" not in err and "internal error" not in err and out == ""
    assert "not-the-password" not in err and "pw-7d1f0e" not in err
    time.sleep(0.05)
    assert listeners.calls == []  # no upstream, no engine: the login failed first
