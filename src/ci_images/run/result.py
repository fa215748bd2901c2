"""What a run did per entry: the Result each entry ends with, which the reports and the lock file read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ci_images.log import redact
from ci_images.plan.decide import Decision
from ci_images.plan.recipe import BUILT_LABEL

if TYPE_CHECKING:
    from ci_images.sign.attest import AttestOutcome
    from ci_images.sign.signer import SignOutcome  # signing modules load only when a run signs

CHANGING_ACTIONS = frozenset({"built", "mirrored", "retagged"})
# Actions after which the target's tags hold the result's digest (the lock file and step outputs record them).
HELD_ACTIONS = frozenset({"built", "mirrored", "skipped", "retagged"})


def _built(decision: Decision) -> str | None:
    """How the entry's digest is made: for work, as the plan says; for a digest left in place, as its index records
    (an image published before the record existed: by the engine, or copied when a mirror)."""
    entry = decision.entry
    if entry.mode == "mirror":
        return "mirror"
    if decision.action in ("skip", "retag"):
        return decision.current.labels.get(BUILT_LABEL) or "engine"
    return entry.how_built.way


@dataclass(frozen=True)
class RacedTag:
    """A tag this run moved that another writer moved again before the run read it back: what it holds now (what
    the lock file records for it, not this run's digest)."""

    digest: str | None  # None: the tag is gone
    platforms: tuple[str, ...] = ()
    source: str = ""
    source_digest: str | None = None


@dataclass(frozen=True)
class Result:
    image: str
    variant: str
    version: str
    action: str  # built, mirrored, skipped, retagged, failed, tested (test-images), planned
    reason: str
    tags: tuple[str, ...]
    digest: str | None
    source_digest: str | None
    platforms: tuple[str, ...]
    duration_s: float = 0.0
    ratelimit_remaining: int | None = None
    previous_digests: Mapping[str, str | None] = field(default_factory=dict)
    smoked: Sequence[str] = ()
    error: str | None = None  # the whole error text, fix included, of a failed entry
    exit_code: int | None = None  # that error's exit code
    tags_moved: tuple[str, ...] = ()  # when moving tags stopped part-way: those that moved ...
    tags_not_moved: tuple[str, ...] = ()  # ... and those that did not (the next run moves them)
    source: str = ""
    signature: SignOutcome | None = (
        None  # how the digest is signed after this run (push-images with a signer)
    )
    copy: Mapping[str, Any] | None = None  # a mirror's copy: exact or not, upstream's digest, what moved
    dry_run: bool = False  # push-images --dry-run: built and smoke-tested, the target left as it was
    # Tags another writer moved while this run moved them: tag reference -> what it holds now ...
    raced: Mapping[str, RacedTag] = field(default_factory=dict)
    raced_signatures: tuple[SignOutcome, ...] = ()  # ... and this run's signatures of that
    built: str | None = None  # how the digest was made: assembled, engine or mirror (plan/builds.py)
    attestations: tuple[AttestOutcome, ...] = ()  # what attests this entry's digests after this run

    @classmethod
    def from_decision(cls, decision: Decision, *, ratelimit_remaining: int | None = None) -> Result:
        entry = decision.entry
        held = decision.current.platforms
        # An entry left as it is (or only retagged) has the platforms the target holds; the catalog may say "all".
        platforms = held if decision.action in ("skip", "retag") and held else entry.platform_names
        return cls(
            image=entry.image,
            variant=entry.variant,
            version=entry.version,
            action="planned",
            reason=decision.reason,
            tags=entry.tag_refs,
            digest=decision.current.digest,
            source_digest=decision.source_digest,
            platforms=tuple(platforms),
            ratelimit_remaining=ratelimit_remaining,
            source=entry.source_ref,
            built=_built(decision),
        )

    @property
    def key(self) -> str:
        return f"{self.image}/{self.variant}/{self.version}"

    @property
    def previous_digest(self) -> str | None:
        """What the version tag held before this run moved it (None: new, or not moved)."""
        if not self.tags:
            return None
        # previous_digests is keyed by tag name; a retag may move only the aliases, so do not take the first.
        return self.previous_digests.get(self.tags[0].rsplit(":", 1)[1])

    def as_record(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "variant": self.variant,
            "version": self.version,
            "action": self.action,
            "reason": redact(self.reason),
            "tags": list(self.tags),
            "digest": self.digest,
            "previous_digest": self.previous_digest,
            "previous_digests": {
                f"{self.tags[0].rsplit(':', 1)[0]}:{t}": d for t, d in self.previous_digests.items()
            }
            if self.tags
            else {},
            "source_digest": self.source_digest,
            "platforms": list(self.platforms),
            "smoke_tested": list(self.smoked),
            "duration_s": self.duration_s,
            "ratelimit_remaining": self.ratelimit_remaining,
            "error": redact(self.error) if self.error else None,
            "exit_code": self.exit_code,
            "tags_moved": list(self.tags_moved),
            "tags_not_moved": list(self.tags_not_moved),
            "signature": self.signature.as_record() if self.signature else None,
            "copy": dict(self.copy) if self.copy is not None else None,
            "dry_run": self.dry_run,
            "raced": {tag: raced.digest for tag, raced in self.raced.items()},
            "built": self.built,
            "attestations": [a.as_record() for a in self.attestations],
        }

    @property
    def signed_text(self) -> str:
        """The table's "signed" cell: new (signed by this run), yes (was signed already), - (not signed)."""
        if self.signature is None:
            return "-"
        return "new" if self.signature.signed else "yes"
