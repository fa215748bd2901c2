"""The build recipe hash and the OCI labels every built image carries.

The recipe hash covers exactly what determines an image's content: the build context (file names, executable bits
and bytes), the Dockerfile, the build args, the pinned base digest, the platforms, and whether it is assembled. It deliberately leaves out the
build time and this repository's commit, so an unchanged recipe on a new commit is recognised as unchanged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ci_images.oci import digest_of
from ci_images.plan.entries import Entry

RECIPE_VERSION = "ci-images-recipe/1"
# An assembled image's bytes are the assembly's (ci_images.assemble), not the engine's: the recipe says so, so that an
# image the engine built once is assembled at the next push, and a change to what the assembly writes (this version)
# makes every assembled image again.
ASSEMBLY_VERSION = "ci-images-assemble/1"
# What the next plan compares with what it would build: the recipe hash and the upstream digest it was built from.
RECIPE_LABEL = "io.github.ci-images.recipe"
SOURCE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
BASE_NAME_LABEL = "org.opencontainers.image.base.name"
CREATED_LABEL = (
    "org.opencontainers.image.created"  # when the run that built it started (or SOURCE_DATE_EPOCH)
)
# How the image was made (plan/builds.py: assembled or engine), an index annotation: the lock file records it.
BUILT_LABEL = "io.github.ci-images.built"
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
    if entry.how_built.assembled:
        add("way", ASSEMBLY_VERSION)
    return digest_of(digest)


def image_labels(
    entry: Entry, *, source_digest: str, recipe: str, revision: str, source_url: str, created: str
) -> dict[str, str]:
    return {
        "org.opencontainers.image.source": source_url,
        "org.opencontainers.image.revision": revision,
        CREATED_LABEL: created,
        "org.opencontainers.image.version": entry.version,
        "org.opencontainers.image.title": entry.title,
        "org.opencontainers.image.description": entry.description,
        BASE_NAME_LABEL: entry.source_ref,
        SOURCE_DIGEST_LABEL: source_digest,
        RECIPE_LABEL: recipe,
    }


def mirror_recipe(entry: Entry, source_digest: str) -> str:
    """A mirrored image changes only when upstream or the platform list does.

    "mirror-copy": mirrors are registry-to-registry copies now; a target still holding an older engine re-upload
    (same source, other bytes) has another recipe label, so the next run replaces it with the copy.
    """
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, "mirror-copy", source_digest, *(sorted(entry.platforms) or ["all"])):
        digest.update(part.encode() + b"\0")
    return digest_of(digest)
