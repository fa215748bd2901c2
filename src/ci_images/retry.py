"""The bounded retry policy both clients use: the registry client for every request, the engine adapter for pulls.

Retries are a small explicit loop rather than urllib3's Retry (mounted on the adapter): Retry cannot bound the
total time spent, has no per-retry hook for our log line, would resend a file body from where the last attempt
stopped reading it, and would hide retried attempts from the request counters the reports rely on."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass


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
