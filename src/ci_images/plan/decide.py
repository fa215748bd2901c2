"""Decisions: compare what upstream and the target hold now with what an entry would produce: build, mirror, retag
or skip, and why. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ci_images.oci import short_digest
from ci_images.plan.entries import Entry
from ci_images.plan.recipe import RECIPE_LABEL, SOURCE_DIGEST_LABEL


@dataclass(frozen=True)
class TargetState:
    """What the target's version tag holds now, and where every tag of the entry points."""

    digest: str | None  # the version tag's digest; None when it does not exist
    labels: Mapping[str, str] = field(hash=False, default_factory=dict)
    tag_digests: Mapping[str, str | None] = field(hash=False, default_factory=dict)
    platforms: tuple[str, ...] | None = None  # the image platforms the version tag holds; None: not read


@dataclass(frozen=True)
class Decision:
    entry: Entry
    action: str  # "build", "mirror", "retag", "skip"; "error" when the entry could not be resolved
    reason: str
    source_digest: str | None
    recipe: str | None
    current: TargetState
    error_code: int | None = None  # the exit code of the error that made it "error"

    def as_record(self) -> dict[str, Any]:
        return {
            **self.entry.as_row(),
            "action": self.action,
            "reason": self.reason,
            "source_digest": self.source_digest,
            "recipe": self.recipe,
            "current_digest": self.current.digest,
        }


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
    changed = _what_changed(entry, source_digest, recipe, current)
    if changed:
        return made(work, changed)
    held = current.digest
    stale = [t for t in entry.tags[1:] if current.tag_digests.get(t) != held]
    if stale:
        return made("retag", f"up to date; moving {', '.join(stale)}")
    return made("skip", "up to date")


def _what_changed(entry: Entry, source_digest: str, recipe: str | None, current: TargetState) -> str | None:
    """Why the version tag does not hold what the entry would make now; None when it does."""
    old_source = current.labels.get(SOURCE_DIGEST_LABEL)
    old_recipe = current.labels.get(RECIPE_LABEL)
    if entry.mode == "mirror" and current.digest == source_digest:
        # A byte copy of upstream (same bytes, same digest). It is what the entry asks for unless the entry now
        # narrows (or widens) the platforms: then a new index must be written.
        holds = current.platforms
        if not entry.all_platforms and holds is not None and set(holds) != set(entry.platforms):
            return (
                f"platforms changed: target holds {', '.join(sorted(holds))}; "
                f"asked for {', '.join(sorted(entry.platforms))}"
            )
        return None
    if entry.mode == "mirror" and old_recipe is None:
        # Not a byte copy and not one of ours: upstream moved on since the copy was made, or someone moved the tag.
        return (
            f"target holds {short_digest(current.digest)}, upstream is {short_digest(source_digest)} "
            "(a new upstream release, or the target's tag was moved)"
        )
    # A build; or a mirror narrowed to some platforms, whose new index records upstream's digest and the platforms
    # (the recipe) in its annotations, so it is compared without reading upstream's index.
    if old_recipe is None:
        return "target was not built by ci-images (no recipe label)"
    if old_source != source_digest:
        return f"upstream changed: {short_digest(old_source, empty='none')} -> {short_digest(source_digest)}"
    if old_recipe != recipe:
        return f"recipe changed: {short_digest(old_recipe, empty='none')} -> {short_digest(recipe)}"
    return None
