"""Mirror entries: upstream's image copied into the target registry by digest (registry to registry, no engine in
the path), smoke-tested by pulling the copy from the target by digest (never from upstream again), and only then
tagged by the publisher.

With nothing to copy to (build-images, or a dry run, whose publisher copies nothing) upstream's own images are
pulled by digest and smoke-tested instead, as before.
"""

from __future__ import annotations

from dataclasses import replace

from ci_images.oci import short_digest
from ci_images.plan.decide import Decision
from ci_images.registry.copy import Copied
from ci_images.run.build import Built, pull_for_smoke, pull_upstream_images, release_builds, smoke_entry
from ci_images.run.context import Context
from ci_images.run.publish import Publisher
from ci_images.run.resolve import upstream_manifest
from ci_images.run.result import Result


def mirror_entry(ctx: Context, decision: Decision, publisher: Publisher | None, base: Result) -> Result:
    entry = decision.entry
    assert decision.source_digest is not None
    fetched = upstream_manifest(ctx, entry, decision.source_digest)
    copied = publisher.stage_copy(entry, decision, fetched) if publisher is not None else None
    if copied is None:
        built = smoke_entry(ctx, entry, pull_upstream_images(ctx, entry, decision.source_digest))
        return replace(base, action="built", smoked=built.smoked, platforms=tuple(built.images))
    assert publisher is not None
    built = _smoke_copy(ctx, decision, copied)
    digest, previous = publisher.publish_copy(entry, decision, copied)
    if copied.exact:
        outcome = "same digest as upstream"
    else:
        outcome = (
            f"narrowed to {', '.join(sorted(copied.platforms))}: digest differs from upstream's "
            f"{short_digest(copied.source_digest)}"
        )
    return replace(
        base,
        action="mirrored",
        reason=f"{decision.reason}; {outcome}",
        digest=digest,
        previous_digests=previous,
        smoked=built.smoked,
        platforms=tuple(sorted(copied.platforms)),
        copy=copied.as_record(),
    )


def _smoke_copy(ctx: Context, decision: Decision, copied: Copied) -> Built:
    """Pull each platform the host can run from the target by digest, with the target's credentials, and test it."""
    entry = decision.entry
    images = {platform: entry.target.with_digest(digest) for platform, digest in copied.platforms.items()}
    if entry.smoke is None:
        return smoke_entry(ctx, entry, images)  # nothing to run: no engine needed
    named = pull_for_smoke(ctx, entry, images, ctx.target_pool.engine_auth(entry.target.api_host))
    try:
        return smoke_entry(ctx, entry, images)
    finally:
        release_builds(ctx, entry, named)
