"""Registry clients shared across worker threads, and the upstream pull budget (Docker Hub's rate limit)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ci_images.errors import RateLimitError
from ci_images.log import log
from ci_images.registry.auth import AuthState
from ci_images.registry.client import RegistryClient
from ci_images.registry.transport import RequestKind


class ClientPool:
    """One RegistryClient per (thread, host), as a client is not thread-safe; the clients of one host share what
    it asked for (basic auth, tokens), so a new thread's client is not refused once more nor fetches its own token."""

    def __init__(self, factory: Callable[[str], RegistryClient]) -> None:
        self._factory = factory
        self._local = threading.local()
        self._all: list[RegistryClient] = []
        self._auth: dict[str, AuthState] = {}  # one per host, shared by that host's clients
        self._lock = threading.Lock()

    def get(self, host: str) -> RegistryClient:
        clients: dict[str, RegistryClient] = getattr(self._local, "clients", None) or {}
        self._local.clients = clients
        if host not in clients:
            client = self._factory(host)
            clients[host] = client
            with self._lock:
                self._all.append(client)
                client.share_auth(self._auth.setdefault(host, client.auth))
        return clients[host]

    def count(
        self, method: str | None = None, kind: RequestKind | None = None, host: str | None = None
    ) -> int:
        with self._lock:
            clients = list(self._all)
        return sum(c.count(method, kind) for c in clients if host is None or c.host == host)

    def engine_auth(self, host: str) -> dict[str, str] | None:
        """Credentials in the form the docker SDK's pull takes, or None for anonymous pulls."""
        credentials = self.get(host).credentials
        if credentials is None:
            return None
        return {"username": credentials.username, "password": credentials.password}

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()


class RateBudget:
    """Tracks the upstream pull quota from ``ratelimit-remaining`` answers and refuses to start pulls below it.

    Stopping before a pull, rather than failing in the middle of an entry, leaves every entry either fully done or
    untouched.
    """

    def __init__(self, min_remaining: int = 10) -> None:
        self.min_remaining = min_remaining
        self.remaining: int | None = None
        self.limit: int | None = None
        self._lock = threading.Lock()

    def observe(self, remaining: int | None, limit: int | None) -> None:
        with self._lock:
            if limit is not None:
                self.limit = limit
            if remaining is not None and (self.remaining is None or remaining < self.remaining):
                self.remaining = remaining

    def check(self, what: str) -> None:
        with self._lock:
            remaining = self.remaining
        if remaining is not None and remaining < self.min_remaining:
            raise RateLimitError(
                f"upstream pull quota nearly used up ({remaining} left, threshold {self.min_remaining}): "
                f"{what} not started",
                fix="run again after the rate-limit window, set CI_IMAGES_UPSTREAM_USER/CI_IMAGES_UPSTREAM_PASSWORD "
                "for a higher limit, or lower --ratelimit-min-remaining",
            )

    def spend(self, pulls: int, *, what: str) -> None:
        """Account for manifest GETs about to be made (they count against the quota)."""
        self.check(what)
        with self._lock:
            if self.remaining is not None:
                self.remaining = max(0, self.remaining - pulls)
                log.debug(f"{what}: ~{self.remaining} upstream pulls left")
