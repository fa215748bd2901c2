"""The plan: every (image, variant, version) the catalog asks for, and what to do about it. Pure data.

``expand`` turns a catalog into entries (tags, platforms and references all computed here, never in workflow bash);
``decide`` compares what upstream and the target hold now with what the entry would produce and says
build / mirror / retag / skip, and why.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_images.catalog import tags as tag_rules
from ci_images.catalog.load import DEFAULT_VARIANT, Catalog, target_repository
from ci_images.catalog.refs import Repository, apply_mirror
from ci_images.errors import UsageError

RECIPE_LABEL = "io.github.ci-images.recipe"
SOURCE_DIGEST_LABEL = "org.opencontainers.image.base.digest"


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
    platforms: tuple[str, ...]
    context: Path | None
    dockerfile: Path | None
    build_args: Mapping[str, str] = field(hash=False)
    smoke: str | None
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

    def as_row(self) -> dict[str, Any]:
        """The listing record (``invoke list-images --json``)."""
        return {
            "image": self.image,
            "variant": self.variant,
            "version": self.version,
            "mode": self.mode,
            "source": self.source_ref,
            "tags": list(self.tag_refs),
            "platforms": list(self.platforms),
        }


def _matches(patterns: Sequence[str], image: str, variant: str, version: str) -> bool:
    names = (image, f"{image}/{variant}", f"{image}/{variant}/{version}", f"{image}:{version}")
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def split_patterns(images: str | Sequence[str] | None) -> list[str]:
    if not images:
        return []
    raw = [images] if isinstance(images, str) else list(images)
    return [p.strip() for item in raw for p in item.split(",") if p.strip()]


def expand(
    catalog: Catalog,
    *,
    registry: str,
    mirror: str | None = None,
    images: str | Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
) -> list[Entry]:
    """All entries of the catalog, in catalog order, filtered by ``images`` globs (image, image/variant,
    image/variant/version or image:version; comma-separated or repeated)."""
    patterns = split_patterns(images)
    entries: list[Entry] = []
    for spec in catalog.images:
        target = target_repository(registry, spec.name)
        pull = apply_mirror(spec.source, mirror)
        chosen_platforms = tuple(platforms) if platforms else spec.platforms
        for variant in spec.variants:
            for version in spec.versions:
                if patterns and not _matches(patterns, spec.name, variant.name, version):
                    continue
                tags = tuple(
                    tag_rules.variant_tag(t, variant.name, DEFAULT_VARIANT)
                    for t in tag_rules.tags_for(spec.tag_templates, version, spec.versions)
                )
                title = spec.title if variant.name == DEFAULT_VARIANT else f"{spec.title} ({variant.name})"
                entries.append(
                    Entry(
                        image=spec.name,
                        variant=variant.name,
                        version=version,
                        mode=spec.mode,
                        source=spec.source,
                        pull=pull,
                        target=target,
                        tags=tags,
                        platforms=chosen_platforms,
                        context=spec.build,
                        dockerfile=spec.dockerfile,
                        build_args=dict(variant.build_args),
                        smoke=variant.smoke,
                        title=title,
                        description=variant.description,
                    )
                )
    if patterns and not entries:
        known = ", ".join(spec.name for spec in catalog.images)
        raise UsageError(
            f"--images {','.join(patterns)} matches nothing in {catalog.path}",
            fix=f"use an image name or glob (images: {known}); image/variant/version and image:version also work",
        )
    return entries


@dataclass(frozen=True)
class TargetState:
    """What the target's version tag holds now, and where every tag of the entry points."""

    digest: str | None  # the version tag's digest; None when it does not exist
    labels: Mapping[str, str] = field(hash=False, default_factory=dict)
    tag_digests: Mapping[str, str | None] = field(hash=False, default_factory=dict)


@dataclass(frozen=True)
class Decision:
    entry: Entry
    action: str  # "build", "mirror", "retag", "skip"
    reason: str
    source_digest: str | None
    recipe: str | None
    current: TargetState

    def as_record(self) -> dict[str, Any]:
        return {
            **self.entry.as_row(),
            "action": self.action,
            "reason": self.reason,
            "source_digest": self.source_digest,
            "recipe": self.recipe,
            "current_digest": self.current.digest,
        }


def _short(digest: str | None) -> str:
    if not digest:
        return "none"
    return digest.split(":", 1)[-1][:12]


def decide(
    entry: Entry, *, source_digest: str, recipe: str | None, current: TargetState, force: bool = False
) -> Decision:
    """Pure: what to do with ``entry`` given the upstream digest, the recipe hash and the target's state."""
    work = "build" if entry.mode == "build" else "mirror"

    def made(action: str, reason: str) -> Decision:
        return Decision(entry, action, reason, source_digest, recipe, current)

    if force:
        return made(work, "forced (--force)")
    if current.digest is None:
        return made(work, f"new: {entry.target.with_tag(entry.tags[0])} does not exist")
    old_source = current.labels.get(SOURCE_DIGEST_LABEL)
    old_recipe = current.labels.get(RECIPE_LABEL)
    if entry.mode == "mirror" and old_recipe is None:
        # No ci-images labels: up to date only when the target holds upstream's very manifest (a byte copy).
        if current.digest != source_digest:
            return made(work, f"upstream changed: {_short(current.digest)} -> {_short(source_digest)}")
    else:
        # A build, or a mirror re-uploaded through the engine (its digest differs from upstream's, so the
        # recipe and source-digest labels say what it was made from).
        if old_recipe is None:
            return made(work, "target was not built by ci-images (no recipe label)")
        if old_source != source_digest:
            return made(work, f"upstream changed: {_short(old_source)} -> {_short(source_digest)}")
        if old_recipe != recipe:
            return made(work, f"recipe changed: {_short(old_recipe)} -> {_short(recipe)}")
    held = current.digest
    stale = [t for t in entry.tags[1:] if current.tag_digests.get(t) != held]
    if stale:
        return made("retag", f"up to date; moving {', '.join(stale)}")
    return made("skip", "up to date")
