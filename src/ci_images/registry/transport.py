"""How the registry client talks HTTP: one session, TLS verified with the right CA bundle, no proxy for loopback,
bounded retries (ci_images.retry) on 429, 5xx and broken connections, and a count of every attempt.

Kept apart from ``client.py``, which knows the distribution API and auth; this module knows neither.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import certifi
import requests

from ci_images.errors import RateLimitError, RegistryError, UpstreamUnreachableError
from ci_images.log import log, redact
from ci_images.oci import certs_d_ca, is_loopback_host
from ci_images.registry.tokens import body_start, service_words
from ci_images.retry import RetryPolicy, parse_retry_after

_bundles: dict[tuple[object, ...], str] = {}


def _remove_bundles() -> None:
    for path in _bundles.values():
        Path(path).unlink(missing_ok=True)


atexit.register(_remove_bundles)


def verify_bundle(host: str, ca_bundle: Path | None = None, *, registry: str | None = None) -> str:
    """The CA file to pass as ``verify=``: the base bundle plus docker's certs.d CA for ``host`` when present, and
    for ``registry`` too when ``host`` is that registry's token service on another host.

    Base: ``ca_bundle``, else SSL_CERT_FILE, else certifi. The engine trusts certs.d for a registry, so the tool
    trusts the same CA without extra settings; and the engine asks a registry's token realm for tokens with the
    registry's own TLS settings (moby ``daemon/internal/distribution/registry.go``, newRepository: the token
    handler's transport carries ``endpoint.TLSConfig``, made from ``certs.d/REGISTRY`` in
    ``daemon/pkg/registry/registry.go``, newTLSConfig), so the tool trusts a realm on another host the same way.
    """
    env_bundle = os.environ.get("SSL_CERT_FILE")
    base = (
        str(ca_bundle)
        if ca_bundle
        else env_bundle
        if env_bundle and Path(env_bundle).is_file()
        else certifi.where()
    )
    hosts = [host] + ([registry] if registry and registry != host else [])
    extras = [ca for ca in dict.fromkeys(certs_d_ca(h) for h in hosts) if ca.is_file()]
    if not extras:
        return base
    key = (base, *((str(ca), ca.stat().st_mtime_ns) for ca in extras))
    if key not in _bundles:
        fd, path = tempfile.mkstemp(prefix="ci-images-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            out.write(Path(base).read_bytes().rstrip(b"\n") + b"\n")
            out.write(b"".join(ca.read_bytes().rstrip(b"\n") + b"\n" for ca in extras))
        _bundles[key] = path
    return _bundles[key]


RequestKind = Literal["manifest", "blob", "upload", "tags", "ping", "token"]
# A request body: bytes, a file (reopened for every attempt), or a factory that opens a fresh body for every attempt
# (a streamed upload reads its source again from the start).
BodyFactory = Callable[[], AbstractContextManager[IO[bytes] | Iterable[bytes]]]
Body = bytes | Path | BodyFactory | None


class ConnectionDropped(RegistryError):
    """The connection failed during a request sent with ``resend=False``: the caller decides how to start over."""


# Seconds to connect, and to wait for the next bytes of an answer (between bytes, so a large layer does not trip it).
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 300.0


class Transport:
    """HTTP for one registry client: a session, TLS from the right CA bundle, no proxy for loopback, retries on
    429/5xx/connection failures, and a count of every attempt by (method, kind) for reports and tests."""

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        ca_bundle: Path | None = None,
        read_timeout_s: float | None = None,
        registry: str | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.registry = registry  # the registry host this transport serves: its token realm shares its trust
        self.timeout = (CONNECT_TIMEOUT_S, read_timeout_s or READ_TIMEOUT_S)
        self.ca_bundle = ca_bundle
        self.session = requests.Session()
        self.counters: Counter[tuple[str, RequestKind]] = Counter()

    @property
    def request_count(self) -> int:
        return sum(self.counters.values())

    def count(self, method: str | None = None, kind: RequestKind | None = None) -> int:
        return sum(
            n
            for (m, k), n in self.counters.items()
            if (method is None or m == method) and (kind is None or k == kind)
        )

    def close(self) -> None:
        self.session.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        kind: RequestKind,
        headers: Mapping[str, str],
        body: Body,
        stream: bool = False,
        resend: bool = True,
    ) -> requests.Response:
        """One request with retries; the answer may be any status but 429/5xx (those are retried, then raised).

        ``stream``: the body of the answer is read by the caller (who closes it). ``resend=False``: no retry at all
        (an upload session that broke mid-body cannot take the same body again): a connection failure raises
        ConnectionDropped and any status is returned.
        """
        request = _Request(method, url, kind, headers, body, stream, resend)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.counters[(method, kind)] += 1
            resp, failure = self._attempt(request)
            if resp is not None and ((resp.status_code != 429 and resp.status_code < 500) or not resend):
                return resp
            retry_after = parse_retry_after(resp.headers.get("Retry-After")) if resp is not None else None
            wait = self.retry.next_wait(attempt, time.monotonic() - started, retry_after)
            if wait is None:
                raise _gave_up(request, attempt, resp, failure)
            why = f"{resp.status_code}" if resp is not None else type(failure).__name__
            log.warning(f"{request.what}: {why}; retry {attempt}/{self.retry.max_attempts} in {wait:.1f} s")
            if resp is not None:
                resp.close()
            time.sleep(wait)

    def _trust_fix(self, host: str) -> str:
        if self.registry and host != self.registry:  # the registry's token service, on another host
            return (
                f"trust the CA of {host}, the token service of {self.registry}: put it in the registry's "
                f"{certs_d_ca(self.registry)} (it serves its token service too, as for the engine) or SSL_CERT_FILE"
            )
        return f"trust the registry's CA: {certs_d_ca(host)} or SSL_CERT_FILE"

    def _attempt(self, request: _Request) -> tuple[requests.Response | None, Exception | None]:
        """One attempt: the answer, or the connection failure a retry may get past."""
        verify = verify_bundle(request.host, self.ca_bundle, registry=self.registry)
        # Loopback traffic never goes through a proxy from the environment.
        proxies = {"http": None, "https": None} if is_loopback_host(request.host) else None
        try:
            with _opened(request.body) as data:
                resp = self.session.request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=data,
                    verify=verify,
                    timeout=self.timeout,
                    proxies=proxies,  # type: ignore[arg-type]  # None values disable env proxies
                    allow_redirects=request.method in ("GET", "HEAD"),
                    stream=request.stream,
                )
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"TLS verification failed for {request.host}: {redact(str(exc))}",
                fix=self._trust_fix(request.host),
            ) from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # an answer cut short: fewer bytes than it announced
            requests.exceptions.ContentDecodingError,
        ) as exc:
            if not request.resend:
                raise ConnectionDropped(f"{request.what}: {type(exc).__name__}: {redact(str(exc))}") from exc
            return None, exc
        return resp, None


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    kind: RequestKind
    headers: Mapping[str, str]
    body: Body
    stream: bool
    resend: bool

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def what(self) -> str:
        return f"{self.method} {redact_url(self.url)}"


def _gave_up(
    request: _Request, attempts: int, resp: requests.Response | None, failure: Exception | None
) -> RegistryError:
    """The error after the last retry: unreachable, rate limited, or failing."""
    if resp is None:
        return UpstreamUnreachableError(
            f"registry {request.host} cannot be reached ({request.what}, {attempts} attempts): "
            f"{redact(str(failure))}",
            fix=f"check that {request.host} is the right host and that it is up and reachable from here",
        )
    message = f"{request.what}: {resp.status_code} {redact(registry_message(resp))} (gave up after {attempts} attempts)"
    if resp.status_code == 429:
        return RateLimitError(
            message, fix="wait for the quota window to pass, or authenticate to get a larger quota"
        )
    return RegistryError(message, fix=f"{request.host} is failing; retry later")


def registry_message(response: requests.Response) -> str:
    """The registry's own words (``{"errors": [{"code", "message", "detail"}]}``) or its token service's (``details``,
    ``error_description``); else the answer's content type and first bytes; "" for an empty answer."""
    try:
        answer = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        answer = None
    said = service_words(answer) if isinstance(answer, dict) else ""
    if said or not response.content:
        return said
    return body_start(response)


def redact_url(url: str) -> str:
    # Upload locations carry signed state in the query and realms may carry user info: show neither.
    parts = urlsplit(url)
    return redact(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}")


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's pull quota from ``ratelimit-limit`` / ``ratelimit-remaining`` (``N;w=SECONDS``)."""

    limit: int | None
    remaining: int | None
    window_s: int | None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimit | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        if "ratelimit-limit" not in lowered and "ratelimit-remaining" not in lowered:
            return None
        limit, limit_window = _parse_quota(lowered.get("ratelimit-limit"))
        remaining, remaining_window = _parse_quota(lowered.get("ratelimit-remaining"))
        return cls(limit=limit, remaining=remaining, window_s=limit_window or remaining_window)


def _parse_quota(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    count: int | None = None
    window: int | None = None
    first, *params = (part.strip() for part in value.split(";"))
    if first.isdigit():
        count = int(first)
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "w" and val.strip().isdigit():
            window = int(val.strip())
    return count, window


@contextmanager
def _opened(body: Body) -> Iterator[Any]:
    # A file or a factory body is opened again for every attempt so a retry sends it from the start.
    if isinstance(body, Path):
        with body.open("rb") as fh:
            yield fh
    elif callable(body):
        with body() as opened:
            yield opened
    else:
        yield body
