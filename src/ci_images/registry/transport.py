"""How the registry client talks HTTP: the retry policy (with Retry-After) and the CA bundle TLS is verified with.

Kept apart from ``registry.py`` because neither knows the distribution API: the client asks ``RetryPolicy`` how
long to wait before the next attempt and ``verify_bundle`` which CA file to pass as ``verify=``.
"""

from __future__ import annotations

import atexit
import email.utils
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import certifi


# Retries are a small explicit loop rather than urllib3's Retry (mounted on the adapter): Retry cannot bound the
# total time spent, has no per-retry hook for our log line, would resend a file body from where the last attempt
# stopped reading it, and would hide retried attempts from the request counters the reports rely on.
@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_s: float = 180.0

    def next_wait(self, attempt: int, elapsed_s: float, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when the attempt or time budget is spent.

        A server's Retry-After wins over the backoff (it knows its quota window); exponential backoff with
        "equal jitter" otherwise, so clients that failed together do not retry together.
        """
        if attempt >= self.max_attempts:
            return None
        if retry_after_s is not None:
            wait = max(retry_after_s, 0.0)
        else:
            ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
            wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        if elapsed_s + wait > self.max_total_s:
            return None
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


DOCKER_CERTS_D = Path("/etc/docker/certs.d")
_bundles: dict[tuple[str, str, int], str] = {}


def _remove_bundles() -> None:
    for path in _bundles.values():
        Path(path).unlink(missing_ok=True)


atexit.register(_remove_bundles)


def verify_bundle(host: str, ca_bundle: Path | None = None) -> str:
    """The CA file to pass as ``verify=``: the base bundle plus docker's certs.d CA for ``host`` when present.

    Base: ``ca_bundle``, else SSL_CERT_FILE, else certifi. The engine trusts certs.d for a registry, so the tool
    trusts the same CA without extra settings.
    """
    env_bundle = os.environ.get("SSL_CERT_FILE")
    base = (
        str(ca_bundle)
        if ca_bundle
        else env_bundle
        if env_bundle and Path(env_bundle).is_file()
        else certifi.where()
    )
    extra = DOCKER_CERTS_D / host / "ca.crt"
    if not extra.is_file():
        return base
    key = (base, str(extra), extra.stat().st_mtime_ns)
    if key not in _bundles:
        fd, path = tempfile.mkstemp(prefix="ci-images-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            out.write(Path(base).read_bytes().rstrip(b"\n") + b"\n" + extra.read_bytes())
        _bundles[key] = path
    return _bundles[key]


__all__ = [
    "DOCKER_CERTS_D",
    "RetryPolicy",
    "parse_retry_after",
    "verify_bundle",
]
