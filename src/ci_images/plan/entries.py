"""The plan: every (image, variant, version) the catalog asks for, and what to do about it. Pure data.

``expand`` turns a catalog into entries (tags, platforms and references all computed here, never in workflow bash);
``decide`` compares what upstream and the target hold now with what the entry would produce and says
build / mirror / retag / skip, and why.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images.catalog import tags as tag_rules
from ci_images.catalog.load import target_repository
from ci_images.catalog.model import ALL_PLATFORMS_WORD, DEFAULT_VARIANT, Catalog
from ci_images.catalog.probes import SmokeSpec
from ci_images.catalog.refs import Repository, apply_mirror
from ci_images.errors import UsageError

if TYPE_CHECKING:
    from ci_images.plan.builds import HowBuilt


@dataclass(frozen=True)
class Entry:
    image: str
    variant: str
    version: str
    mode: str  # "build" or "mirror"
    source: Repository  # upstream as the catalog names it (docker.io/...)
    pull: Repository  # where it is actually fetched from (after the upstream mirror)
    target: Repository
    tags: tuple[str, ...]  # tag names on the target repository; the first is the version tag
    platforms: tuple[str, ...]  # empty: every platform upstream publishes (a mirror with `platforms: all`)
    context: Path | None
    dockerfile: Path | None
    build_args: Mapping[str, str] = field(hash=False)
    smoke: SmokeSpec | None
    title: str
    description: str

    @property
    def key(self) -> str:
        return f"{self.image}/{self.variant}/{self.version}"

    @property
    def source_ref(self) -> str:
        return self.source.with_tag(self.version)

    @property
    def pull_ref(self) -> str:
        return self.pull.with_tag(self.version)

    @property
    def tag_refs(self) -> tuple[str, ...]:
        return tuple(self.target.with_tag(t) for t in self.tags)

    @property
    def all_platforms(self) -> bool:
        return not self.platforms

    @property
    def how_built(self) -> HowBuilt:
        """Assembled, built by the engine, or mirrored, and why (plan/builds.py; the Dockerfile is read once)."""
        from ci_images.plan.builds import how_built  # BuildKit's parser loads only where a Dockerfile is read

        return how_built(self)

    @property
    def platform_names(self) -> list[str]:
        """The platforms as the catalog says them (``["all"]`` for every platform upstream has)."""
        return list(self.platforms) or [ALL_PLATFORMS_WORD]

    def as_row(self) -> dict[str, Any]:
        """The listing record (``invoke list-images --json``): ``smoke`` is the smoke test's settings and probes, in
        order (None: no smoke test)."""
        return {
            "image": self.image,
            "variant": self.variant,
            "version": self.version,
            "mode": self.mode,
            "source": self.source_ref,
            "tags": list(self.tag_refs),
            "platforms": self.platform_names,
            "smoke": self.smoke.as_record() if self.smoke is not None else None,
            "builds": self.how_built.way,
            "builds_reason": self.how_built.reason,
        }


def _names(image: str, variant: str, version: str) -> tuple[str, ...]:
    return (image, f"{image}/{variant}", f"{image}/{variant}/{version}", f"{image}:{version}")


def _matches(patterns: Sequence[str], image: str, variant: str, version: str) -> bool:
    names = _names(image, variant, version)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def split_patterns(images: str | Sequence[str] | None) -> list[str]:
    if not images:
        return []
    raw = [images] if isinstance(images, str) else list(images)
    return [p.strip() for item in raw for p in item.split(",") if p.strip()]


def expand(catalog: Catalog, *, registry: str, mirror: str | None = None) -> list[Entry]:
    """Every entry of the catalog on the target ``registry`` prefix, in catalog order; ``mirror`` is the Docker Hub
    mirror entries pull from."""
    entries: list[Entry] = []
    for spec in catalog.images:
        target = target_repository(registry, spec.target)
        for variant in spec.variants:
            for release in spec.releases:
                tags = tuple(
                    tag_rules.variant_tag(t, variant.name, DEFAULT_VARIANT)
                    for t in tag_rules.tags_for(spec.tag_templates, release.version, spec.versions)
                )
                title = spec.title if variant.name == DEFAULT_VARIANT else f"{spec.title} ({variant.name})"
                entries.append(
                    Entry(
                        image=spec.name,
                        variant=variant.name,
                        version=release.version,
                        mode=spec.mode,
                        source=release.source,
                        pull=apply_mirror(release.source, mirror),
                        target=target,
                        tags=tags,
                        platforms=release.platforms,
                        context=spec.build,
                        dockerfile=spec.dockerfile,
                        build_args=dict(variant.build_args),
                        smoke=variant.smoke,
                        title=title,
                        description=variant.description,
                    )
                )
    return entries


def select(
    catalog: Catalog,
    entries: Sequence[Entry],
    *,
    images: str | Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
) -> list[Entry]:
    """The entries ``images`` globs name (image, image/variant, image/variant/version or image:version;
    comma-separated or repeated; a glob that names nothing is an error), each on ``platforms`` when given."""
    patterns = split_patterns(images)
    unmatched = [
        p for p in patterns if not any(_matches([p], e.image, e.variant, e.version) for e in entries)
    ]
    if unmatched:
        known = ", ".join(spec.name for spec in catalog.images)
        raise UsageError(
            f"--images {', '.join(unmatched)} matches nothing in {catalog.path}",
            fix=f"use an image name or glob (images: {known}); image/variant/version and image:version also work",
        )
    chosen = [e for e in entries if not patterns or _matches(patterns, e.image, e.variant, e.version)]
    if platforms:
        chosen = [replace(e, platforms=tuple(platforms)) for e in chosen]
    return chosen
