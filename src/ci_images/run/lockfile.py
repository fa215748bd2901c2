"""The lock file, images.lock.json: every published tag -> digest, so consumers can pin image@sha256:..."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ci_images.run.report import HELD_ACTIONS, Result, atomic_write

LOCK_VERSION = 1


def update_lock(path: Path, results: Sequence[Result]) -> dict[str, Any]:
    """Merge this run into the lock file: every target tag -> digest, source digest and platforms.

    Tags this run did not touch (other images, filtered out with --images, or failed) keep their recorded values.
    """
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
        images: dict[str, Any] = (
            dict(current.get("images", {})) if current.get("version") == LOCK_VERSION else {}
        )
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        images = {}
    for r in results:
        if not r.digest or r.action not in HELD_ACTIONS:
            continue
        for tag in r.tags:
            images[tag] = {
                "digest": r.digest,
                "pinned": f"{tag.rsplit(':', 1)[0]}@{r.digest}",
                "source": r.source,
                "source_digest": r.source_digest,
                "platforms": list(r.platforms),
            }
    lock = {"version": LOCK_VERSION, "images": dict(sorted(images.items()))}
    atomic_write(path, json.dumps(lock, indent=2) + "\n")
    return lock
