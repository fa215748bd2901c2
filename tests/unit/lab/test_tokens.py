"""The lab's token service (ci_images.lab.tokens) over real HTTPS on 127.0.0.1: grants, answer styles, faults, the
request log, and tokens distribution would accept (claims, an x5c leaf issued by the lab CA). No registry, no engine:
tests/integration/test_token_registry.py runs it in front of Debian's docker-registry."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ci_images.errors import LabError
from ci_images.lab.tokens import (
    ISSUER,
    SERVICE,
    Account,
    Fault,
    Level,
    Scope,
    Style,
    TokenService,
    granted,
)
from ci_images.loopback.certs import CertificateAuthority

pytestmark = pytest.mark.usefixtures("secrets")
WRITER = Account("writer-pw", {"getsops": Level.WRITE, "nsmithuk": Level.READ})
READER = Account("reader-pw", {"getsops": Level.READ})
PUSH = "repository:getsops/vault:pull,push"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def service(ca: CertificateAuthority, tmp_path: Path) -> Iterator[TokenService]:
    started = TokenService(
        tmp_path, ca, accounts={"writer": WRITER, "reader": READER}, anonymous={"public": Level.READ}
    )
    yield started
    started.stop()


def _get(
    service: TokenService, ca: CertificateAuthority, *scopes: str, auth: tuple[str, str] | None = None
) -> requests.Response:
    params = [("service", SERVICE), *(("scope", s) for s in scopes)]
    # verify= per request: REQUESTS_CA_BUNDLE would override a session's CA (LAB.md).
    return requests.get(service.realm, params=params, auth=auth, verify=str(ca.cert_path), timeout=10)


def _claims(token: str, ca: CertificateAuthority) -> dict[str, Any]:
    """The claims of a token checked as distribution checks it: an x5c leaf issued by the CA signs it (ES256)."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_path.read_bytes()))
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["ES256"], audience=SERVICE, issuer=ISSUER)
    return claims


def test_scope_parse_and_grants() -> None:
    scope = Scope.parse("repository:getsops/ci-container-images/vault:push,pull")
    assert scope == Scope("repository", "getsops/ci-container-images/vault", frozenset({"pull", "push"}))
    assert str(scope) == "repository:getsops/ci-container-images/vault:pull,push"
    assert Scope.parse("repository(plugin):a/b:pull") == Scope("repository", "a/b", frozenset({"pull"}))
    assert Scope.parse("nonsense") is None
    assert granted(WRITER, {}, scope) == {"pull", "push"}
    assert granted(READER, {}, scope) == {"pull"}
    # A namespace covers itself and what is below it, not a longer name that starts the same.
    assert granted(READER, {}, Scope("repository", "getsopsx/vault", frozenset({"pull"}))) == frozenset()
    assert granted(
        None, {"public": Level.READ}, Scope("repository", "public/x", frozenset({"pull", "push"}))
    ) == {"pull"}
    assert granted(WRITER, {}, Scope("registry", "catalog", frozenset({"*"}))) == frozenset()


def test_docker_hub_answer_holds_a_token_distribution_accepts(
    service: TokenService, ca: CertificateAuthority
) -> None:
    resp = _get(service, ca, PUSH, "repository:nsmithuk/local-kms:pull", auth=("writer", "writer-pw"))
    assert resp.status_code == 200
    answer = resp.json()
    assert set(answer) == {"token", "access_token", "expires_in", "issued_at"}
    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == 60
    claims = _claims(answer["token"], ca)
    assert claims["sub"] == "writer"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["nbf"] == claims["iat"]
    assert claims["jti"]
    assert sorted(claims["access"], key=lambda a: a["name"]) == [
        {"type": "repository", "name": "getsops/vault", "actions": ["pull", "push"]},
        {"type": "repository", "name": "nsmithuk/local-kms", "actions": ["pull"]},
    ]


def test_a_scope_not_granted_is_left_out(service: TokenService, ca: CertificateAuthority) -> None:
    resp = _get(service, ca, PUSH, "repository:hashicorp/vault:pull", auth=("reader", "reader-pw"))
    assert _claims(resp.json()["token"], ca)["access"] == [
        {"type": "repository", "name": "getsops/vault", "actions": ["pull"]}
    ]
    anonymous = _get(service, ca, PUSH, "repository:public/thing:pull")
    assert _claims(anonymous.json()["token"], ca)["access"] == [
        {"type": "repository", "name": "public/thing", "actions": ["pull"]}
    ]
    (logged_reader, logged_anonymous) = service.requests()
    assert logged_reader.user == "reader"
    assert logged_reader.access == (Scope("repository", "getsops/vault", frozenset({"pull"})),)
    assert logged_anonymous.user is None


def test_wrong_password_is_refused(service: TokenService, ca: CertificateAuthority) -> None:
    resp = _get(service, ca, PUSH, auth=("writer", "nope"))
    assert resp.status_code == 401
    assert resp.json() == {"details": "incorrect username or password"}
    assert [(r.status, r.answer, r.user) for r in service.requests()] == [(401, "refused", None)]


def test_ghcr_and_oauth2_styles(service: TokenService, ca: CertificateAuthority) -> None:
    service.style = Style.GHCR
    assert set(_get(service, ca, PUSH, auth=("writer", "writer-pw")).json()) == {"token"}
    service.style = Style.OAUTH2
    service.set_lifetime(5)
    answer = _get(service, ca, PUSH, auth=("writer", "writer-pw")).json()
    assert set(answer) == {"access_token", "token_type", "expires_in", "scope", "issued_at"}
    assert (answer["expires_in"], answer["scope"]) == (5, "repository:getsops/vault:pull,push")
    claims = _claims(answer["access_token"], ca)
    assert claims["exp"] - claims["iat"] == 5


def test_oauth2_post_password_and_refresh_grants(service: TokenService, ca: CertificateAuthority) -> None:
    service.style = Style.OAUTH2
    form = {"grant_type": "password", "username": "writer", "password": "writer-pw", "service": SERVICE}
    first = requests.post(
        service.realm,
        data={**form, "access_type": "offline", "scope": PUSH},
        verify=str(ca.cert_path),
        timeout=10,
    ).json()
    assert first["refresh_token"]
    again = requests.post(
        service.realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "service": SERVICE,
            "scope": PUSH,
        },
        verify=str(ca.cert_path),
        timeout=10,
    )
    assert _claims(again.json()["access_token"], ca)["sub"] == "writer"
    bad = requests.post(
        service.realm, data={**form, "password": "nope"}, verify=str(ca.cert_path), timeout=10
    )
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (Fault.HTML, 200, "text/html; charset=utf-8"),
        (Fault.SERVER_ERROR, 500, "text/plain; charset=utf-8"),
        (Fault.NO_TOKEN, 200, "application/json"),
    ],
)
def test_faults(
    service: TokenService, ca: CertificateAuthority, fault: Fault, status: int, content_type: str
) -> None:
    with service.faulty(fault):
        resp = _get(service, ca, PUSH, auth=("writer", "writer-pw"))
    assert (resp.status_code, resp.headers["Content-Type"]) == (status, content_type)
    assert "token" not in resp.text
    assert _get(service, ca, PUSH, auth=("writer", "writer-pw")).json()[
        "token"
    ]  # the fault ended with the block
    assert [r.answer for r in service.requests()] == [str(fault), "docker-hub"]


def test_count_per_scope_and_user(service: TokenService, ca: CertificateAuthority) -> None:
    _get(service, ca, PUSH, auth=("writer", "writer-pw"))
    _get(service, ca, "repository:getsops/vault:push,pull", auth=("reader", "reader-pw"))
    _get(service, ca, "repository:getsops/vault:pull", auth=("reader", "reader-pw"))
    assert service.count() == 3
    assert service.count(PUSH) == 2  # the actions in any order
    assert service.count(PUSH, user="reader") == 1
    assert service.count("repository:getsops/vault:pull") == 1
    service.reset()
    assert service.count() == 0


def test_lifetime_is_bounded(service: TokenService) -> None:
    for seconds in (4, 301):
        with pytest.raises(LabError, match="out of range"):
            service.set_lifetime(seconds)
    service.set_lifetime(300)
    assert service.lifetime_s == 300
