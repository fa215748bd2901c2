"""Where ci-images keeps state between runs: ``$XDG_CACHE_HOME/ci-images`` (default ``~/.cache/ci-images``).

The embedded ``local`` registry, a started ``dockerd``'s log and the lab's cached ingredients live below it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/ci-images``, else ``~/.cache/ci-images``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ci-images"


@contextlib.contextmanager
def machine_lock(name: str, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock called ``name`` across the processes of this machine (released on exit or crash);
    ``on_wait`` is called once when another process holds it and this one has to wait."""
    locks = cache_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / (hashlib.sha256(name.encode()).hexdigest()[:24] + ".lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
