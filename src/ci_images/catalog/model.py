"""The catalog's model: frozen dataclasses, made only by catalog.load after validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci_images.catalog.probes import SmokeSpec
from ci_images.catalog.refs import Repository
from ci_images.catalog.updates import NO_FILTER, UpdateFilter

DEFAULT_VARIANT = "plain"  # the variant every image has: the image itself, with no tag suffix

# ``platforms: all`` in the catalog: every platform upstream publishes (mirrors only). The model says it with an empty
# tuple, so "all" can never be mistaken for a platform name further down.
ALL_PLATFORMS_WORD = "all"
ALL_PLATFORMS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Release:
    """One version of an image with its own settings: where upstream keeps it and which platforms to take.

    ``source`` and ``platforms`` are the image's unless the catalog gives them for this version (an old release may
    live in another repository, or be amd64-only upstream while newer ones are multi-arch).
    """

    version: str
    source: Repository
    platforms: tuple[str, ...]  # ALL_PLATFORMS (empty): whatever upstream's index lists


@dataclass(frozen=True)
class Variant:
    name: str
    build_args: Mapping[str, str]
    description: str
    smoke: SmokeSpec | None  # None: no smoke test


@dataclass(frozen=True)
class ImageSpec:
    name: str
    source: Repository
    versions: tuple[str, ...]
    releases: tuple[Release, ...]  # one per version, in the same order
    target: str  # repository path under the registry prefix (default: the image's name)
    build: Path | None  # None: mirror the upstream image as it is
    dockerfile: Path | None
    smoke: SmokeSpec | None  # None: no smoke test
    title: str
    description: str
    platforms: tuple[str, ...]  # the image's default; ALL_PLATFORMS (empty) for `platforms: all`
    tag_templates: tuple[str, ...]
    variants: tuple[Variant, ...]  # the plain variant first
    updates: UpdateFilter = NO_FILTER  # which upstream tags `outdated` and `bump` consider

    @property
    def mode(self) -> str:
        return "build" if self.build is not None else "mirror"

    def release(self, version: str) -> Release:
        return next(r for r in self.releases if r.version == version)


@dataclass(frozen=True)
class Catalog:
    path: Path
    registry: str | None
    upstream_mirror: str | None
    platforms: tuple[str, ...]
    lock_file: Path
    ratelimit_min_remaining: int
    images: tuple[ImageSpec, ...]

    @property
    def root(self) -> Path:
        return self.path.parent
