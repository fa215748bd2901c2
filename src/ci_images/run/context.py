"""What a run shares across its worker threads: the registry client pools, the engine (connected on first use),
the upstream pull budget, and results computed once per run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ci_images.errors import Cancelled, Interrupted
from ci_images.registry.pool import ClientPool, RateBudget

if TYPE_CHECKING:
    from ci_images.engine.client import Engine

T = TypeVar("T")


@dataclass
class Context:
    """Everything a run needs: the pools of registry clients, the engine, and run-wide settings."""

    upstream_pool: ClientPool
    target_pool: ClientPool
    engine_factory: Callable[[], Engine]
    env: Mapping[str, str]
    budget: RateBudget = field(default_factory=RateBudget)
    upstream_mirror: str | None = (
        None  # the Docker Hub mirror (host[:port]) command probes' clients come through
    )
    _engine: Engine | None = None
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)
    _memo: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _memo_locks: dict[tuple[str, ...], threading.Lock] = field(default_factory=dict)
    # Set when the run is interrupted: workers stop at their next step and no further tag moves.
    cancel: threading.Event = field(default_factory=threading.Event)
    interrupted: Interrupted | None = None  # the interrupt that stopped execute(), for the caller to raise

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = self.engine_factory()
            return self._engine

    @property
    def engine_if_connected(self) -> Engine | None:
        return self._engine

    def check_cancelled(self, what: str) -> None:
        """Raise Cancelled when the run was interrupted: called before every step that changes something."""
        if self.cancel.is_set():
            raise Cancelled(
                f"interrupted before {what}", fix="run again: nothing of this entry was published"
            )

    def once(self, key: tuple[str, ...], compute: Callable[[], T]) -> T:
        """``compute()`` once per run for ``key``, also when threads ask at the same time: variants of one version
        share their upstream tag, and a second GET of its index would cost another Docker Hub pull."""
        with self._engine_lock:
            lock = self._memo_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                self._memo[key] = compute()
            result: T = self._memo[key]
            return result

    def close(self) -> None:
        """Close the registry clients' connections (the engine's are closed with the process)."""
        self.upstream_pool.close()
        self.target_pool.close()
