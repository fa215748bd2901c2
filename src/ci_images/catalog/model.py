"""The catalog's model: frozen dataclasses, made only by catalog.load after validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci_images.catalog.refs import Repository
from ci_images.catalog.updates import NO_FILTER, UpdateFilter


@dataclass(frozen=True)
class Variant:
    name: str
    build_args: Mapping[str, str]
    description: str
    smoke: str | None


@dataclass(frozen=True)
class ImageSpec:
    name: str
    source: Repository
    versions: tuple[str, ...]
    build: Path | None  # None: mirror the upstream image as it is
    dockerfile: Path | None
    smoke: str | None
    title: str
    description: str
    platforms: tuple[str, ...]
    tag_templates: tuple[str, ...]
    variants: tuple[Variant, ...]  # the plain variant first
    updates: UpdateFilter = NO_FILTER  # which upstream tags `outdated` and `bump` consider

    @property
    def mode(self) -> str:
        return "build" if self.build is not None else "mirror"


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
