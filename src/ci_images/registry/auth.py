"""How the registry client authenticates: what a registry asks for in a 401 answer (basic auth, or a token from a
realm), fetching and caching those tokens, and the state the clients of one host share.

Anonymous first; once a host has asked, credentials (or a token for the request's scope) go with every request,
so later requests are not refused once more. The state is shared by the clients of one host (ClientPool gives each
thread its own client): a new thread neither gets refused once more nor fetches a token another thread holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import requests

from ci_images.errors import RegistryError
from ci_images.log import log, redact
from ci_images.oci import is_loopback_host
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
    """What a registry host asked for (basic auth, or tokens from a realm) and the tokens fetched so far."""

    basic: bool = False  # the registry asked for basic auth
    bearer: dict[str, str] | None = None  # realm and service, once the registry asked for a token
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # scope -> (token, monotonic expiry)


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
        bearer = self.state.bearer
        if bearer and not self.header(scope):
            self._fetch_token(bearer, scope)

    def header(self, scope: str | None) -> dict[str, str]:
        if self.state.basic and self.credentials:
            return {"Authorization": basic_header(self.credentials)}
        token = self.state.tokens.get(scope or "")
        if token and token[1] > time.monotonic():
            return {"Authorization": f"Bearer {token[0]}"}
        return {}

    def on_challenge(
        self, challenge: requests.Response, scope: str | None, *, sent_credentials: bool
    ) -> bool:
        """Act on a 401 answer; True when sending the request again can help.

        Basic auth helps when the refused request went without credentials: not "when this client had not learnt
        it yet", since the clients of one host share what they learn and another thread may have just learnt it.
        """
        scheme, params = parse_www_authenticate(challenge.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            self.state.basic = True
            return self.credentials is not None and not sent_credentials
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
        self._fetch_token(self.state.bearer, scope or params.get("scope"), cache_as=scope)
        return True

    def _fetch_token(
        self, challenge: Mapping[str, str], scope: str | None, *, cache_as: str | None = None
    ) -> None:
        realm = challenge["realm"]
        query = [("service", challenge["service"])] if "service" in challenge else []
        query += [("scope", s) for s in (scope or "").split()]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        headers = {"Authorization": basic_header(self.credentials)} if self.credentials else {}
        resp = self.transport.send("GET", url, kind="token", headers=headers, body=None)
        if resp.status_code != 200:
            raise RegistryError(
                f"token request to {redact_url(realm)} for {scope or 'login'}: {resp.status_code} "
                f"{redact(registry_message(resp))}",
                fix=self.credentials_fix(),
            )
        answer = resp.json()
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token endpoint {redact_url(realm)} answered without a token")
        log.add_mask(token)
        # Refresh a little early so a long push never sends an expired token.
        lifetime = float(answer.get("expires_in") or 60)
        key = cache_as if cache_as is not None else scope
        self.state.tokens[key or ""] = (token, time.monotonic() + max(lifetime - 10, 5))


def basic_header(credentials: Credentials) -> str:
    header = requests.auth._basic_auth_str(credentials.username, credentials.password)
    log.add_mask(header.removeprefix("Basic "))
    return header
