"""A token service's answer, read: the token, how long to keep it, and what it grants.

Distribution's token protocol (distribution/distribution ``docs/spec/auth/token.md``, ``oauth.md``): a GET (or an
OAuth2 POST) to the realm a registry names in its ``WWW-Authenticate: Bearer`` challenge answers JSON with ``token``
(Docker Hub also sends it as ``access_token``; OAuth2 sends only ``access_token``), and optionally ``expires_in``
(seconds; 60 when omitted) and ``issued_at``. GHCR answers ``{"token": ...}`` alone, so a token's own ``exp`` claim
(a JWT's, when the token is one) is the better clock. What the token grants is in the JWT's ``access`` claim
(``token.md``, "the resource access granted") or an OAuth2 answer's ``scope``; an opaque token does not say.

Anything else a realm answers (an HTML page from a captive proxy, JSON without a token, a refusal) is a
RegistryError (exit 3) in the service's own words: never a decoding error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from ci_images.errors import RegistryError
from ci_images.log import log, redact

# distribution's token.md: "When omitted, this defaults to 60 seconds."
DEFAULT_LIFETIME_S = 60.0
# A token is given up this share of its lifetime before it ends (at most 10 s), so a request never carries one
# that expires on the way; the registry's own leeway (60 s past exp in distribution) is not counted on.
EARLY_SHARE, EARLY_MAX_S = 0.2, 10.0

# Granted actions per repository name, e.g. {"getsops/vault": frozenset({"pull"})}.
Grants = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Token:
    """A bearer token, kept until ``renew_at`` (time.monotonic()); ``granted``: what it grants, when it says."""

    value: str = field(repr=False)
    lifetime_s: float
    renew_at: float
    granted: Grants | None = None

    @property
    def valid(self) -> bool:
        return time.monotonic() < self.renew_at

    def grants(self, repository: str, action: str) -> bool | None:
        """Whether the token grants ``action`` on ``repository``; None when the token does not say."""
        if self.granted is None:
            return None
        return action in self.granted.get(repository, frozenset())


def read_token_answer(resp: requests.Response, *, where: str) -> Token:
    """The token in a 200 answer of a token service; ``where`` names the service and the request, for errors."""
    answer = _json_object(resp, where)
    value = answer.get("token") or answer.get("access_token")
    if not isinstance(value, str) or not value:
        said = service_words(answer)
        raise RegistryError(
            f"{where} answered without a token" + (f": {redact(said)}" if said else ""),
            fix="check that the realm is the registry's token service (a proxy may answer for it) and that the "
            "account may sign in there, then retry",
        )
    log.add_mask(value)
    claims = _jwt_claims(value)
    lifetime = _lifetime(claims, answer)
    early = min(EARLY_MAX_S, lifetime * EARLY_SHARE)
    return Token(value, lifetime, time.monotonic() + max(lifetime - early, 0.0), _granted(claims, answer))


def service_words(answer: Mapping[str, Any]) -> str:
    """A token service's or registry's own words in a JSON answer: distribution's ``errors`` list, or the
    ``details`` (distribution's token servers, Docker Hub), ``error_description`` / ``error`` (OAuth2) or
    ``message`` a token service sends."""
    errors = answer.get("errors")
    if isinstance(errors, list):
        parts = [
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)
        ]
        if any(parts):
            return "; ".join(p for p in parts if p)
    for key in ("details", "error_description", "error", "message"):
        said = answer.get(key)
        if isinstance(said, str) and said.strip():
            return said.strip()
    return ""


def body_start(resp: requests.Response, limit: int = 120) -> str:
    """An answer that is not the JSON expected: its content type and first bytes (whitespace folded, redacted)."""
    content_type = resp.headers.get("Content-Type") or "no Content-Type"
    text = " ".join(resp.content[:limit].decode("utf-8", "replace").split())
    if not text:
        return f"an empty body ({content_type})"
    more = "..." if len(resp.content) > limit else ""
    return f"{content_type} ({len(resp.content)} bytes): {redact(text)!r}{more}"


def _json_object(resp: requests.Response, where: str) -> Mapping[str, Any]:
    try:
        answer = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        answer = None
    if not isinstance(answer, dict):
        raise RegistryError(
            f"{where} answered {resp.status_code} with {body_start(resp)}, not a token",
            fix="the realm the registry named did not answer as a token service: a captive portal or proxy may be "
            "in the way, or HTTPS_PROXY/NO_PROXY send it elsewhere; open the realm's URL from this machine",
        )
    return answer


def _jwt_claims(value: str) -> Mapping[str, Any] | None:
    """The claims of a JWT, unverified (the registry verifies it; the client only reads when it ends and what it
    grants); None for an opaque token."""
    if value.count(".") != 2:
        return None
    import jwt  # only token registries need it

    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number > 0 else None


def _lifetime(claims: Mapping[str, Any] | None, answer: Mapping[str, Any]) -> float:
    """Seconds the token lives from now: its ``exp`` (counted from its ``iat`` when it has one, so a clock that
    differs from the service's does not matter), else ``expires_in``, else distribution's 60 s."""
    if claims is not None:
        exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
        if exp is not None and iat is not None and exp > iat:
            return exp - iat
        if exp is not None:
            return max(exp - time.time(), 0.0)
    return _number(answer.get("expires_in")) or DEFAULT_LIFETIME_S


def _granted(claims: Mapping[str, Any] | None, answer: Mapping[str, Any]) -> Grants | None:
    """What the token grants: the JWT's ``access`` claim, else an OAuth2 answer's ``scope``; None when neither."""
    granted: dict[str, frozenset[str]] = {}
    if claims is not None and isinstance(claims.get("access"), list):
        for item in claims["access"]:
            if (
                isinstance(item, dict)
                and item.get("type") == "repository"
                and isinstance(item.get("name"), str)
            ):
                actions = frozenset(str(a) for a in item.get("actions") or [])
                granted[item["name"]] = granted.get(item["name"], frozenset()) | actions
        return granted
    scope = answer.get("scope")
    if not isinstance(scope, str):
        return None
    for part in scope.split():
        kind, _, rest = part.partition(":")
        name, _, listed = rest.rpartition(":")
        if kind == "repository" and name:
            granted[name] = granted.get(name, frozenset()) | frozenset(a for a in listed.split(",") if a)
    return granted


__all__ = ["Token", "body_start", "read_token_answer", "service_words"]
