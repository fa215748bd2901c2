"""The build recipe hash and the OCI labels every built image carries.

The recipe hash covers exactly what determines an image's content: the build context (file names, executable bits
and bytes), the Dockerfile, the build args, the pinned base digest and the platforms. It deliberately leaves out the
build time and this repository's commit, so an unchanged recipe on a new commit is recognised as unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ci_images import proc
from ci_images.errors import CommandError
from ci_images.plan.entries import RECIPE_LABEL, SOURCE_DIGEST_LABEL, Entry

RECIPE_VERSION = "ci-images-recipe/1"
_IGNORED_DIRS = frozenset({".git", "__pycache__", ".mypy_cache", ".pytest_cache"})


def _context_files(context: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        files.extend(Path(dirpath) / f for f in sorted(filenames))
    return sorted(files, key=lambda p: p.relative_to(context).as_posix())


def recipe_hash(entry: Entry, source_digest: str) -> str:
    if entry.context is None or entry.dockerfile is None:
        raise ValueError(f"{entry.key} is mirrored, it has no recipe")
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)

    add(RECIPE_VERSION, "dockerfile", entry.dockerfile.relative_to(entry.context).as_posix())
    for file in _context_files(entry.context):
        executable = "x" if os.access(file, os.X_OK) else "-"
        add(
            "file",
            file.relative_to(entry.context).as_posix(),
            executable,
            hashlib.sha256(file.read_bytes()).digest(),
        )
    for key in sorted(entry.build_args):
        add("arg", key, entry.build_args[key])
    add("base", source_digest, "platforms", *sorted(entry.platforms))
    return f"sha256:{digest.hexdigest()}"


def repository_revision(root: Path, env: Mapping[str, str]) -> str:
    """This repository's commit: GITHUB_SHA in Actions, else git, else 'unknown'."""
    if env.get("GITHUB_SHA"):
        return env["GITHUB_SHA"]
    try:
        result = proc.run(["git", "-C", root, "rev-parse", "HEAD"], check=False, timeout=10)
    except CommandError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def repository_url(env: Mapping[str, str], default: str) -> str:
    if env.get("GITHUB_REPOSITORY"):
        return f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}"
    return default


def created_timestamp(env: Mapping[str, str]) -> str:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else now."""
    epoch = env.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_labels(
    entry: Entry, *, source_digest: str, recipe: str, revision: str, source_url: str, created: str
) -> dict[str, str]:
    return {
        "org.opencontainers.image.source": source_url,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": entry.version,
        "org.opencontainers.image.title": entry.title,
        "org.opencontainers.image.description": entry.description,
        "org.opencontainers.image.base.name": entry.source_ref,
        SOURCE_DIGEST_LABEL: source_digest,
        RECIPE_LABEL: recipe,
    }


def mirror_recipe(entry: Entry, source_digest: str) -> str:
    """A mirrored image changes only when upstream or the platform list does."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, "mirror", source_digest, *sorted(entry.platforms)):
        digest.update(part.encode() + b"\0")
    return f"sha256:{digest.hexdigest()}"
