"""The lock file, images.lock.json: every published tag -> digest, so consumers can pin image@sha256:..."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ci_images.cache import machine_lock
from ci_images.errors import UsageError
from ci_images.run.report import Result, atomic_write

LOCK_VERSION = 1


def read_lock(path: Path) -> dict[str, Any]:
    """The tags a lock file records ({} when there is none yet). A file that is not a ci-images lock file is bad
    input (exit 2): checked before a run starts, so it never surfaces after tags have moved."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"lock file {path} cannot be read: {exc}", fix="fix its permissions or pass --lock PATH"
        ) from exc
    fix = f"delete {path} (the next push writes it again) or pass --lock PATH"
    try:
        current = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"lock file {path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})", fix=fix) from exc
    if not isinstance(current, dict) or not isinstance(current.get("images"), dict):
        raise UsageError(f"lock file {path} is not a ci-images lock file (no 'images' mapping)", fix=fix)
    if current.get("version") != LOCK_VERSION:
        raise UsageError(
            f"lock file {path} has version {current.get('version')!r}; this ci-images writes version {LOCK_VERSION}",
            fix=fix,
        )
    return dict(current["images"])


def update_lock(path: Path, results: Sequence[Result]) -> dict[str, Any]:
    """Merge this run into the lock file: every target tag -> digest, source digest and platforms.

    Tags this run did not touch (other images, filtered out with --images, or failed) keep their recorded values.
    Two runs on one machine update it one after the other (a file lock), so neither loses the other's tags.
    """
    with machine_lock(f"lockfile:{path.resolve()}"):
        return _update(path, results)


def _update(path: Path, results: Sequence[Result]) -> dict[str, Any]:
    images = read_lock(path)
    for r in results:
        if not r.digest or r.action not in {"built", "skipped", "retagged"}:
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
