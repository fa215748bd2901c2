"""Where ci-images keeps state between runs: ``$XDG_CACHE_HOME/ci-images`` (default ``~/.cache/ci-images``).

The embedded ``local`` registry, a started ``dockerd``'s log and the lab's cached ingredients live below it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/ci-images``, else ``~/.cache/ci-images``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ci-images"
