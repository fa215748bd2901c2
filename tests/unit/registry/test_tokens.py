"""Token answers (ci_images.registry.tokens): the three answer styles, how long a token is kept (its JWT's exp, else
expires_in, else 60 s), what it grants, and every answer that is not a token becoming a RegistryError."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
import requests

from ci_images.errors import RegistryError
from ci_images.registry.tokens import DEFAULT_LIFETIME_S, body_start, read_token_answer, service_words

pytestmark = pytest.mark.usefixtures("secrets")
WHERE = "token service auth.example.test of registry.example.test (user 'u', login)"


def _answer(
    body: bytes | dict[str, Any], content_type: str = "application/json", status: int = 200
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.headers["Content-Type"] = content_type
    resp._content = json.dumps(body).encode() if isinstance(body, dict) else body
    return resp


def _jwt(lifetime: int, access: list[dict[str, Any]] | None = None, *, iat: bool = True) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "test", "exp": now + lifetime}
    if iat:
        claims["iat"] = now
    if access is not None:
        claims["access"] = access
    return jwt.encode(claims, "a-test-key-of-32-bytes-or-more-0123456789", algorithm="HS256")


def test_a_ghcr_answer_is_kept_as_long_as_its_jwt_lives() -> None:
    token = read_token_answer(_answer({"token": _jwt(300)}), where=WHERE)
    assert token.lifetime_s == 300
    assert 289 < token.renew_at - time.monotonic() <= 290  # given up 10 s early
    short = read_token_answer(_answer({"token": _jwt(5)}), where=WHERE)
    assert short.lifetime_s == 5 and 3.9 < short.renew_at - time.monotonic() <= 4  # 20 % early below 50 s


def test_exp_without_iat_counts_from_now() -> None:
    token = read_token_answer(_answer({"token": _jwt(120, iat=False)}), where=WHERE)
    assert 118 <= token.lifetime_s <= 120


def test_expires_in_for_opaque_tokens_and_60_s_without_it() -> None:
    docker_hub = read_token_answer(
        _answer({"token": "opaque-1", "access_token": "opaque-1", "expires_in": 30}), where=WHERE
    )
    assert (docker_hub.value, docker_hub.lifetime_s, docker_hub.granted) == ("opaque-1", 30, None)
    oauth = read_token_answer(_answer({"access_token": "opaque-2", "expires_in": "45"}), where=WHERE)
    assert (oauth.value, oauth.lifetime_s) == ("opaque-2", 45)
    bare = read_token_answer(_answer({"token": "opaque-3"}), where=WHERE)
    assert bare.lifetime_s == DEFAULT_LIFETIME_S
    assert read_token_answer(_answer({"token": "opaque-4", "expires_in": True}), where=WHERE).lifetime_s == 60


def test_what_a_token_grants_from_its_access_claim_or_an_oauth2_scope() -> None:
    access = [
        {"type": "repository", "name": "getsops/vault", "actions": ["pull"]},
        {"type": "repository", "name": "library/vault", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    token = read_token_answer(_answer({"token": _jwt(60, access)}), where=WHERE)
    assert token.grants("getsops/vault", "pull") is True
    assert token.grants("getsops/vault", "push") is False
    assert token.grants("library/vault", "push") is True
    assert token.grants("other/repo", "pull") is False
    nothing = read_token_answer(_answer({"token": _jwt(60, [])}), where=WHERE)
    assert nothing.grants("getsops/vault", "pull") is False
    oauth = read_token_answer(
        _answer(
            {"access_token": "opaque-5", "scope": "repository:getsops/vault:pull,push repository:x/y:pull"}
        ),
        where=WHERE,
    )
    assert oauth.grants("getsops/vault", "push") is True and oauth.grants("x/y", "push") is False
    assert (
        read_token_answer(_answer({"token": _jwt(60)}), where=WHERE).grants("getsops/vault", "pull") is None
    )


def test_an_html_page_is_a_registry_error_with_its_content_type_and_first_bytes(secrets: set[str]) -> None:
    secrets.add("s3cret-cookie")
    page = b"<!DOCTYPE html>\n<html>\n  <body>Wi-Fi login required s3cret-cookie</body></html>" + b" " * 200
    with pytest.raises(RegistryError) as caught:
        read_token_answer(_answer(page, "text/html; charset=utf-8"), where=WHERE)
    message = caught.value.message
    assert message.startswith(f"{WHERE} answered 200 with text/html; charset=utf-8 ({len(page)} bytes): ")
    assert "'<!DOCTYPE html> <html> <body>Wi-Fi login required ***</body></html>'" in message
    assert caught.value.exit_code == 3
    assert "captive portal" in (caught.value.fix or "")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"details": "nothing issued for this account"}, ": nothing issued for this account"),
        ({"error": "invalid_grant", "error_description": "refresh token expired"}, ": refresh token expired"),
        ({"token": ""}, ""),
        ({"token": 42}, ""),
    ],
)
def test_json_without_a_token_is_a_registry_error_in_the_services_words(
    body: dict[str, Any], says: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        read_token_answer(_answer(body), where=WHERE)
    assert caught.value.message == f"{WHERE} answered without a token{says}"


@pytest.mark.parametrize("body", [b"[1, 2]", b"\xff\xfe not utf-8", b"", b"null"])
def test_json_that_is_no_object_is_a_registry_error(body: bytes) -> None:
    with pytest.raises(RegistryError, match="not a token"):
        read_token_answer(_answer(body), where=WHERE)


def test_service_words_and_body_start() -> None:
    assert service_words(
        {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
    ) == ("DENIED: requested access to the resource is denied")
    assert service_words({"details": "incorrect username or password"}) == "incorrect username or password"
    assert service_words({"message": " quota exceeded "}) == "quota exceeded"
    assert service_words({"errors": [], "other": 1}) == ""
    assert body_start(_answer(b"", "text/plain")) == "an empty body (text/plain)"
    assert body_start(_answer(b"x" * 130, "text/plain")) == f"text/plain (130 bytes): '{'x' * 120}'..."
