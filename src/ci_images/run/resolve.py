"""Resolve the plan against the registries: HEAD every upstream tag (free on Docker Hub) and read what the target
holds, then decide per entry. Nothing is pulled, built or pushed here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ci_images.errors import CiImagesError, RegistryError, UpstreamUnreachableError
from ci_images.plan import recipe
from ci_images.plan.decide import Decision, TargetState, decide
from ci_images.plan.entries import Entry
from ci_images.registry import documents
from ci_images.run.context import Context


def _upstream_digest(ctx: Context, entry: Entry) -> str:
    client = ctx.upstream_pool.get(entry.pull.api_host)
    key = ("head", entry.pull.api_host, entry.pull.path, entry.version)
    try:
        info = ctx.once(key, lambda: client.head_manifest(entry.pull.path, entry.version))
    except UpstreamUnreachableError as exc:
        raise UpstreamUnreachableError(
            f"cannot reach the upstream registry {entry.pull.host} (asking for {entry.pull_ref}): {exc.message}",
            fix=(
                "if Docker Hub is blocked here, pass --upstream-mirror / set CI_IMAGES_UPSTREAM_MIRROR (or the "
                "catalog's upstream_mirror) to a Docker Hub mirror or pull-through cache (offline: `invoke lab-up` "
                "starts one and prints the variables)"
            ),
        ) from exc
    if info is None:
        raise RegistryError(
            f"upstream {entry.pull_ref} does not exist",
            fix=f"check the version {entry.version!r} of {entry.image} in the catalog against the upstream's tags",
        )
    if info.ratelimit is not None:
        ctx.budget.observe(info.ratelimit.remaining, info.ratelimit.limit)
    return info.digest


def upstream_manifest(ctx: Context, entry: Entry, digest: str) -> tuple[str, bytes]:
    """Upstream's manifest (index) for ``digest``: (media type, bytes), read once per run for every entry made
    from it (a manifest GET is a pull on Docker Hub, spent from the budget first)."""
    client = ctx.upstream_pool.get(entry.pull.api_host)

    def fetch() -> tuple[str, bytes]:
        ctx.budget.spend(1, what=entry.key)
        got = client.get_manifest(entry.pull.path, digest)
        if got is None:
            raise RegistryError(
                f"upstream {entry.pull.with_digest(digest)} vanished after the plan", fix="run again"
            )
        info, body = got
        if info.ratelimit is not None:
            ctx.budget.observe(info.ratelimit.remaining, info.ratelimit.limit)
        return info.media_type, body

    return ctx.once(("manifest", entry.pull.api_host, entry.pull.path, digest), fetch)


def _target_state(ctx: Context, entry: Entry) -> TargetState:
    client = ctx.target_pool.get(entry.target.api_host)
    held = documents.read_held(client, entry.target.path, entry.tags[0])
    if held is None:
        return TargetState(digest=None)
    tag_digests: dict[str, str | None] = {entry.tags[0]: held.digest}
    for tag in entry.tags[1:]:
        info = client.head_manifest(entry.target.path, tag)
        tag_digests[tag] = info.digest if info else None
    return TargetState(
        digest=held.digest, labels=held.labels, tag_digests=tag_digests, platforms=held.platforms
    )


def entry_recipe(entry: Entry, source_digest: str) -> str:
    if entry.mode == "build":
        return recipe.recipe_hash(entry, source_digest)
    return recipe.mirror_recipe(entry, source_digest)


def resolve(
    ctx: Context,
    entries: Sequence[Entry],
    *,
    check_target: bool,
    force: bool = False,
    jobs: int = 8,
    before_target: Callable[[], None] | None = None,
) -> list[Decision]:
    """HEAD every upstream tag (and the target's tags when publishing), in parallel, and decide per entry.

    HEAD requests do not count against Docker Hub's pull limit, so this costs nothing when nothing changed.
    ``before_target`` runs before an entry first reads the target, once its upstream answered.
    """

    # An upstream host that could not be reached, and why: entries not yet started skip its retries.
    unreachable: dict[str, UpstreamUnreachableError] = {}

    def one(entry: Entry) -> Decision:
        if entry.pull.api_host in unreachable:
            raise unreachable[entry.pull.api_host]
        try:
            return decide_one(entry)
        except UpstreamUnreachableError as exc:
            unreachable.setdefault(entry.pull.api_host, exc)
            raise  # the whole run needs upstream: stop early with the mirror hint
        except CiImagesError as exc:
            # e.g. a version upstream does not have: that entry fails, the others go on.
            return Decision(
                entry, "error", exc.render(), None, None, TargetState(digest=None), error_code=exc.exit_code
            )

    def decide_one(entry: Entry) -> Decision:
        source_digest = _upstream_digest(ctx, entry)
        entry_hash = entry_recipe(entry, source_digest)
        if not check_target:
            return Decision(
                entry, entry.mode, "requested", source_digest, entry_hash, TargetState(digest=None)
            )
        if before_target is not None:
            before_target()
        return decide(
            entry,
            source_digest=source_digest,
            recipe=entry_hash,
            current=_target_state(ctx, entry),
            force=force,
        )

    with ThreadPoolExecutor(
        max_workers=max(1, min(jobs, len(entries) or 1)), thread_name_prefix="resolve"
    ) as pool:
        return list(pool.map(one, entries))
