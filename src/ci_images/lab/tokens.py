"""A token service for the lab: registries that authenticate as Docker Hub and GHCR do, with Bearer tokens.

Debian's docker-registry (distribution 2.8) runs with ``auth: token`` (see ``loopback.server.TokenAuth``) and trusts
tokens signed by a key whose certificate, sent in the JWT's ``x5c`` header, chains to its ``rootcertbundle``: the lab
CA. This service hands out those tokens over HTTPS on loopback, as Docker Hub's auth.docker.io and GHCR's /token do:

- ``GET /token?service=S&scope=repository:NAME:pull,push`` with optional basic auth (distribution's
  ``docs/spec/auth/token.md``), and ``POST /token`` with a form, ``grant_type=password`` or ``refresh_token``
  (``docs/spec/auth/oauth.md``);
- ES256 JWTs with the claims distribution checks (``registry/auth/token/token.go``: ``iss``, ``aud`` = service,
  ``exp``/``nbf`` with 60 s leeway, a signature by the ``x5c`` leaf; ``accesscontroller.go``: every access the
  request needs must be in ``access``). A scope the account is not granted is left out of the token, so the
  registry answers 401 ``error="insufficient_scope"``, as distribution expects of a token server;
- accounts with per-namespace grants (read: pull; write: pull, push; delete: pull, push, delete), optional
  anonymous grants (a public repository);
- three answer styles (Docker Hub, GHCR, OAuth2), a token lifetime, and faults (an HTML page, a 500, an answer
  without a token) that a test switches at run time; a request log the tests count, per scope.

Test harness only: nothing in the product imports it (import-linter's lab contract).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ci_images.errors import LabError
from ci_images.lab.https import Answer, HttpsServer
from ci_images.log import log
from ci_images.loopback.certs import CertificateAuthority
from ci_images.oci import LOOPBACK

# The realm's host name: the registry listens on 127.0.0.1, its token service on `localhost`, another host as far
# as a client can tell (auth.docker.io vs registry-1.docker.io). The lab CA's server certificates name both.
REALM_HOST_NAME = "localhost"
SERVICE = "ci-images-lab-registry"
ISSUER = "ci-images-lab-token-service"
MIN_LIFETIME_S, MAX_LIFETIME_S = 5, 300
DEFAULT_LIFETIME_S = 60
TOKEN_PATH = "/token"  # noqa: S105 (a URL path, not a password)
_JSON = {"Content-Type": "application/json"}
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="ci-images lab token service"'}


class Style(enum.StrEnum):
    """How a token answer looks."""

    DOCKER_HUB = "docker-hub"  # {token, access_token, expires_in, issued_at}
    GHCR = "ghcr"  # {token}
    OAUTH2 = "oauth2"  # {access_token, token_type, expires_in, scope, issued_at}


class Fault(enum.StrEnum):
    """A token service gone wrong, as a captive proxy, a wrong realm or an outage shows it."""

    HTML = "html"  # 200 with an HTML page
    SERVER_ERROR = "500"  # 500 with a plain-text body
    NO_TOKEN = "no-token"  # noqa: S105 (200 with JSON that holds no token)


class Level(enum.StrEnum):
    """What an account may do in a namespace."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"

    @property
    def actions(self) -> frozenset[str]:
        return {
            Level.READ: frozenset({"pull"}),
            Level.WRITE: frozenset({"pull", "push"}),
            Level.DELETE: frozenset({"pull", "push", "delete"}),
        }[self]


@dataclass(frozen=True)
class Account:
    """A user of the token service: a password, and per namespace (``getsops`` covers ``getsops/...``) a level."""

    password: str = field(repr=False)
    grants: Mapping[str, Level] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """``repository:getsops/vault:pull,push`` (distribution's ``docs/spec/auth/scope.md``)."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            return None
        return cls(kind.split("(")[0], name, frozenset(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def granted(account: Account | None, anonymous: Mapping[str, Level], scope: Scope) -> frozenset[str]:
    """The actions of ``scope`` an account (None: anonymous) gets: its grants' and the anonymous ones."""
    if scope.type != "repository":
        return frozenset()
    grants = [*anonymous.items(), *(account.grants.items() if account else ())]
    allowed: set[str] = set()
    for namespace, level in grants:
        if scope.name == namespace or scope.name.startswith(namespace.rstrip("/") + "/"):
            allowed |= level.actions
    return scope.actions & allowed


@dataclass(frozen=True)
class TokenRequest:
    """One request the service answered, for tests to count."""

    at: float  # time.monotonic()
    method: str
    user: str | None  # None: anonymous, or credentials that were refused
    scopes: tuple[Scope, ...]  # as requested
    access: tuple[Scope, ...]  # as granted (in the token)
    status: int
    answer: str  # the style, the fault, or "refused"
    account: str | None = (
        None  # the `account` parameter: docker's registry client (the engine) sends it, ci-images not
    )


class TokenService:
    """The token service on https://localhost:PORT/token (a thread of this process) until ``stop()``."""

    def __init__(
        self,
        directory: Path,
        ca: CertificateAuthority,
        *,
        accounts: Mapping[str, Account],
        anonymous: Mapping[str, Level] | None = None,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        style: Style = Style.DOCKER_HUB,
        service: str = SERVICE,
        issuer: str = ISSUER,
        host_name: str = REALM_HOST_NAME,
    ) -> None:
        self.accounts = dict(accounts)
        self.anonymous = dict(anonymous or {})
        self.service = service
        self.issuer = issuer
        self.style = style
        self.fault: Fault | None = None
        self.lifetime_s = _checked_lifetime(lifetime_s)
        for account in self.accounts.values():
            log.add_mask(account.password)
        self._key, self._x5c = _signing_identity(ca, directory)
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._lock = threading.Lock()
        self._log: list[TokenRequest] = []
        tls = ca.issue_server_cert(directory / "tls")
        self._https = HttpsServer((LOOPBACK, 0), tls, {TOKEN_PATH: self.answer})
        self.port = self._https.port
        self.host = f"{host_name}:{self.port}"

    @property
    def realm(self) -> str:
        return f"https://{self.host}{TOKEN_PATH}"

    def stop(self) -> None:
        self._https.stop()

    # -- settings a test changes while the service runs --------------------------------------------------------------

    def set_lifetime(self, seconds: int) -> None:
        self.lifetime_s = _checked_lifetime(seconds)

    @contextmanager
    def faulty(self, fault: Fault) -> Iterator[None]:
        """Answer every request with ``fault`` inside the block."""
        self.fault = fault
        try:
            yield
        finally:
            self.fault = None

    def reset(self, *, style: Style = Style.DOCKER_HUB, lifetime_s: int = DEFAULT_LIFETIME_S) -> None:
        """Back to a style and lifetime, no fault, an empty request log."""
        self.style, self.fault = style, None
        self.set_lifetime(lifetime_s)
        with self._lock:
            self._log.clear()

    # -- the request log -------------------------------------------------------------------------------------------

    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._log)

    def count(self, scope: str | None = None, *, user: str | None = None) -> int:
        """Requests answered so far; with ``scope``, those that asked for it (the actions in any order)."""
        wanted = Scope.parse(scope) if scope else None
        return sum(
            1
            for entry in self.requests()
            if (wanted is None or wanted in entry.scopes) and (user is None or entry.user == user)
        )

    # -- tokens -----------------------------------------------------------------------------------------------------

    def mint(
        self,
        subject: str,
        access: Sequence[Scope],
        *,
        lifetime_s: int | None = None,
        issued_at: float | None = None,
        audience: str | None = None,
    ) -> str:
        """A token as the service signs it; tests mint expired ones (``issued_at`` in the past) or foreign ones."""
        now = int(time.time() if issued_at is None else issued_at)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service if audience is None else audience,
            "exp": now + (self.lifetime_s if lifetime_s is None else lifetime_s),
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [
                {"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in access if s.actions
            ],
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"typ": "JWT", "x5c": self._x5c})
        log.add_mask(token)
        return token

    def answer(self, method: str, params: Mapping[str, list[str]], authorization: str | None) -> Answer:
        """(status, headers, body) for one token request; logged."""
        scopes = tuple(
            s for text in params.get("scope", []) for part in text.split() if (s := Scope.parse(part))
        )
        user, account, refused = self._authenticate(method, params, authorization)
        named = next(iter(params.get("account") or []), None)
        fault = self.fault
        if fault is not None:
            answer = _fault_answer(fault)
            self._record(method, user, scopes, (), answer[0], str(fault), named)
            return answer
        if refused:
            self._record(method, None, scopes, (), 401, "refused", named)
            return 401, _JSON | _BASIC_CHALLENGE, json.dumps({"details": refused}).encode()
        service = (params.get("service") or [self.service])[0]
        if service != self.service:
            self._record(method, user, scopes, (), 400, "refused", named)
            refusal = {"error": "invalid_request", "details": f"unknown service {service!r}"}
            return 400, _JSON, json.dumps(refusal).encode()
        access = tuple(
            Scope(s.type, s.name, actions) for s in scopes if (actions := granted(account, self.anonymous, s))
        )
        lifetime, style = self.lifetime_s, self.style
        issued = time.time()
        token = self.mint(user or "", access, lifetime_s=lifetime, issued_at=issued)
        issued_at = (
            datetime.datetime.fromtimestamp(int(issued), datetime.UTC).isoformat().replace("+00:00", "Z")
        )
        if style is Style.GHCR:
            payload: dict[str, Any] = {"token": token}
        elif style is Style.DOCKER_HUB:
            payload = {"token": token, "access_token": token, "expires_in": lifetime, "issued_at": issued_at}
        else:
            payload = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": " ".join(str(s) for s in access),
                "issued_at": issued_at,
            }
            if method == "POST" and user and (params.get("access_type") or [""])[0] == "offline":
                refresh = secrets.token_urlsafe(24)
                log.add_mask(refresh)
                with self._lock:
                    self._refresh_tokens[refresh] = user
                payload["refresh_token"] = refresh
        self._record(method, user, scopes, access, 200, str(style), named)
        return 200, _JSON, json.dumps(payload).encode()

    def _authenticate(
        self, method: str, params: Mapping[str, list[str]], authorization: str | None
    ) -> tuple[str | None, Account | None, str]:
        """(user, account, why refused): basic auth on GET, the form's grant on POST; no credentials: anonymous."""
        user = password = None
        if method == "POST":
            grant = (params.get("grant_type") or [""])[0]
            if grant == "refresh_token":
                with self._lock:
                    user = self._refresh_tokens.get((params.get("refresh_token") or [""])[0])
                return (user, self.accounts.get(user or ""), "" if user else "invalid refresh token")
            if grant != "password":
                return None, None, f"unsupported grant_type {grant!r}"
            user, password = (params.get("username") or [""])[0], (params.get("password") or [""])[0]
        elif authorization and authorization.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, None, "malformed basic credentials"
        if user is None:
            return None, None, ""
        account = self.accounts.get(user)
        if account is None or not secrets.compare_digest(account.password, password or ""):
            return None, None, "incorrect username or password"
        return user, account, ""

    def _record(
        self,
        method: str,
        user: str | None,
        scopes: tuple[Scope, ...],
        access: tuple[Scope, ...],
        status: int,
        answer: str,
        account: str | None = None,
    ) -> None:
        entry = TokenRequest(time.monotonic(), method, user, scopes, access, status, answer, account)
        with self._lock:
            self._log.append(entry)


def _checked_lifetime(seconds: int) -> int:
    if not MIN_LIFETIME_S <= seconds <= MAX_LIFETIME_S:
        raise LabError(
            f"token lifetime {seconds} s is out of range",
            fix=f"give {MIN_LIFETIME_S} to {MAX_LIFETIME_S} s (mint() makes tokens of any age)",
        )
    return seconds


def _fault_answer(fault: Fault) -> Answer:
    if fault is Fault.HTML:
        page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Wi-Fi login required</body></html>\n"
        return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()
    if fault is Fault.SERVER_ERROR:
        return 500, {"Content-Type": "text/plain; charset=utf-8"}, b"internal server error\n"
    return 200, _JSON, json.dumps({"details": "nothing issued for this account"}).encode()


def _signing_identity(
    ca: CertificateAuthority, directory: Path
) -> tuple[ec.EllipticCurvePrivateKey, list[str]]:
    """An ES256 key and its certificate, issued by the lab CA (the registry's rootcertbundle), as an x5c chain.

    The lab CA has path length 0, so the signing certificate is its direct leaf: x5c is that one certificate, and
    distribution verifies it against the bundle (token.go, parseAndVerifyCertChain: any extended key usage).
    """
    key, cert = ca.issue(
        directory,
        "signer",
        common_name="ci-images lab token signer",
        extensions=[
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            )
        ],
    )
    return key, [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


__all__ = [
    "ISSUER",
    "SERVICE",
    "Account",
    "Fault",
    "Level",
    "Scope",
    "Style",
    "TokenRequest",
    "TokenService",
    "granted",
]
