"""Where ci-images keeps state between runs: ``$XDG_CACHE_HOME/ci-images`` (default ``~/.cache/ci-images``).

The embedded ``local`` registry, a started ``dockerd``'s log, the lab's cached ingredients and the catalogs that
passed the JSON Schema (``validated-catalogs/``) live below it.
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


class FileMemo:
    """Keys remembered as empty files in a folder of the cache: what was checked once and need not be checked again
    (a catalog that passed the JSON Schema, by the hash of its bytes and the schema's). Best effort: a folder that
    cannot be written remembers nothing, and the check runs every time. The newest ``keep`` keys stay."""

    def __init__(self, folder: Path, *, keep: int = 64) -> None:
        self.folder = folder
        self.keep = keep

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _is_key(key) and (self.folder / key).is_file()

    def add(self, key: str) -> None:
        if not _is_key(key):
            raise ValueError(f"not a memo key: {key!r}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / key).touch()
            kept = sorted(self.folder.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
            for old in kept[self.keep :]:
                old.unlink(missing_ok=True)
        except OSError:
            pass


def _is_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)
