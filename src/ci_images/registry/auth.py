"""How the registry client authenticates: what a registry asks for in a 401 answer (basic auth, or a token from a
realm), fetching and caching those tokens, and the state the clients of one host share.

Anonymous first; once a host has asked, credentials (or a token for the request's scope) go with every request,
so later requests are not refused once more. The state is shared by the clients of one host (ClientPool gives each
thread its own client): a new thread neither gets refused once more nor fetches a token another thread holds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import requests

from ci_images.errors import RegistryError
from ci_images.log import log, redact
from ci_images.oci import is_loopback_host
from ci_images.registry.tokens import Token, read_token_answer
from ci_images.registry.transport import Transport, redact_url, registry_message

_CHALLENGE_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


def parse_www_authenticate(value: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="repo:x:pull,push"`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    for key, raw in _CHALLENGE_PARAM.findall(rest):
        params[key.lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
    return scheme.lower(), params


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        log.add_mask(self.password)


@dataclass
class AuthState:
    """What a registry host asked for (basic auth, or tokens from a realm) and the tokens fetched so far; shared by
    the clients of one host, so one token request per (host, scope) serves every thread while it is valid."""

    basic: bool = False  # the registry asked for basic auth
    bearer: dict[str, str] | None = None  # realm and service, once the registry asked for a token
    tokens: dict[str, Token] = field(default_factory=dict)  # scope ("" for a login) -> its token
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fetching: dict[str, threading.Lock] = field(default_factory=dict, repr=False)

    def scope_lock(self, scope: str) -> threading.Lock:
        """Held while a scope's token is fetched: a second thread waits for that token instead of asking again."""
        with self._lock:
            return self._fetching.setdefault(scope, threading.Lock())

    @property
    def scheme(self) -> str | None:
        return "bearer" if self.bearer else "basic" if self.basic else None


class Authenticator:
    """The Authorization header for a request's scope, and what to do when a registry answers 401."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None,
        transport: Transport,
        credentials_fix: Callable[[], str],
    ) -> None:
        self.host = host
        self.credentials = credentials
        self.transport = transport
        self.credentials_fix = credentials_fix
        self.state = AuthState()

    def prepare(self, scope: str | None) -> None:
        """On a token registry, fetch the scope's token before the request: no anonymous round trip first."""
        if self.state.bearer and not self.header(scope):
            self.token(scope)

    def header(self, scope: str | None) -> dict[str, str]:
        if self.state.basic and self.credentials:
            return {"Authorization": basic_header(self.credentials)}
        token = self.state.tokens.get(scope or "")
        if token and token.valid:
            return {"Authorization": f"Bearer {token.value}"}
        return {}

    def on_challenge(
        self, challenge: requests.Response, scope: str | None, *, sent: Mapping[str, str]
    ) -> bool:
        """Act on a 401 answer to a request that carried ``sent`` (its auth headers); True when sending the request
        again can help.

        Basic auth helps when the refused request went without credentials: not "when this client had not learnt
        it yet", since the clients of one host share what they learn and another thread may have just learnt it.
        A token helps unless the refused request carried the scope's current token and the registry said
        ``insufficient_scope``: the service granted what it will, and asking again would only cost a request.
        """
        scheme, params = parse_www_authenticate(challenge.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            self.state.basic = True
            return self.credentials is not None and not sent
        if scheme != "bearer" or "realm" not in params:
            return False
        realm = params["realm"]
        if urlsplit(realm).scheme != "https" and not is_loopback_host(urlsplit(realm).netloc):
            raise RegistryError(
                f"{self.host} asks for credentials at a plain-HTTP token realm {redact_url(realm)}",
                fix="use the registry's HTTPS endpoint",
            )
        self.state.bearer = {
            "realm": realm,
            **({"service": params["service"]} if "service" in params else {}),
        }
        carried = sent.get("Authorization", "").removeprefix("Bearer ") or None
        held = self.state.tokens.get(scope or "")
        if params.get("error") == "insufficient_scope" and held and held.valid and held.value == carried:
            return False
        self.token(scope, stale=carried, asked=params.get("scope"))
        return True

    def token(self, scope: str | None, *, stale: str | None = None, asked: str | None = None) -> Token:
        """The token for ``scope``: the one held while it is valid and not ``stale`` (the one a refused request
        carried), else a new one. One request per (host, scope) at a time: a thread that finds another fetching
        the same scope waits for it and takes its token."""
        key = scope or ""
        with self.state.scope_lock(key):
            held = self.state.tokens.get(key)
            if held is not None and held.valid and held.value != stale:
                return held
            token = self._fetch_token(scope or asked)
            self.state.tokens[key] = token
            return token

    def _fetch_token(self, scope: str | None) -> Token:
        bearer = self.state.bearer
        assert bearer is not None
        realm = bearer["realm"]
        query = [("service", bearer["service"])] if "service" in bearer else []
        query += [("scope", s) for s in (scope or "").split()]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        headers = {"Authorization": basic_header(self.credentials)} if self.credentials else {}
        who = f"user {self.credentials.username!r}" if self.credentials else "anonymous"
        service = urlsplit(realm).netloc.rpartition("@")[2]  # a realm's user info is never shown
        where = f"token service {service} of {self.host} ({who}, {scope or 'login'})"
        try:
            resp = self.transport.send("GET", url, kind="token", headers=headers, body=None)
        except RegistryError as exc:
            # Unreachable, TLS, 5xx or 429 to the end: the same error, saying for whom the token was asked.
            raise type(exc)(f"{where}: {exc.message}", fix=exc.fix) from exc
        if resp.status_code != 200:
            raise RegistryError(
                f"{where} refused: {resp.status_code} {redact(registry_message(resp))}",
                fix=self.credentials_fix(),
            )
        return read_token_answer(resp, where=where)


def challenge_words(resp: requests.Response) -> str:
    """What a registry's 401 challenge says beyond "authentication required": ``error`` (``insufficient_scope``,
    ``invalid_token``) and the scope it wanted, in brackets; "" when it says nothing more."""
    scheme, params = parse_www_authenticate(resp.headers.get("WWW-Authenticate", ""))
    if scheme != "bearer" or "error" not in params:
        return ""
    scope = f" for {params['scope']}" if "scope" in params else ""
    return f" [{params['error']}{scope}]"


def basic_header(credentials: Credentials) -> str:
    header = requests.auth._basic_auth_str(credentials.username, credentials.password)
    log.add_mask(header.removeprefix("Basic "))
    return header
