"""Make an entry's images: build every platform FROM its own upstream digest (or bring a mirrored image in), then
smoke-test every platform the host can run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ci_images.errors import RegistryError, UsageError
from ci_images.log import log
from ci_images.plan import recipe
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.registry import oci
from ci_images.run.context import Context


def local_ref(entry: Entry, platform: str) -> str:
    """Where one platform's build lives in the engine (the classic store keeps one image per reference)."""
    return f"ci-images/{entry.image}:{entry.tags[0]}-{platform.replace('/', '-')}"


@dataclass
class Built:
    """The engine images of one entry, per platform, and what the smoke tests said."""

    images: dict[str, str]
    smoked: list[str]
    unsmoked: list[str]


def _pull_base(ctx: Context, entry: Entry, source_digest: str) -> dict[str, str]:
    """Per-platform upstream manifest digests: one GET of the upstream index."""
    client = ctx.upstream.get(entry.pull.api_host)

    def fetch() -> dict[str, str]:
        ctx.budget.spend(1 + len(entry.platforms), what=entry.key)
        return oci.platform_digests(client, entry.pull.path, source_digest)

    digests = ctx.once(("index", entry.pull.api_host, entry.pull.path, source_digest), fetch)
    missing = [p for p in entry.platforms if p not in digests]
    if missing:
        raise RegistryError(
            f"upstream {entry.pull_ref} has no image for {', '.join(missing)} (it has {', '.join(sorted(digests)) or 'none'})",
            fix=f"limit {entry.image}'s platforms in the catalog to what upstream publishes",
        )
    return digests


def build_entry(
    ctx: Context, decision: Decision, *, revision: str, created: str, source_url: str, smoke: bool = True
) -> Built:
    entry = decision.entry
    assert decision.source_digest is not None and decision.recipe is not None
    assert entry.context is not None and entry.dockerfile is not None
    platform_digests = _pull_base(ctx, entry, decision.source_digest)
    labels = recipe.image_labels(
        entry,
        source_digest=decision.source_digest,
        recipe=decision.recipe,
        revision=revision,
        source_url=source_url,
        created=created,
    )
    engine = ctx.engine
    images: dict[str, str] = {}
    for platform in entry.platforms:
        ctx.check_cancelled(f"building {platform}")
        base = entry.pull.with_digest(platform_digests[platform])
        log.info(f"{entry.key}: building {platform} FROM {base}")
        engine.pull(base, platform=platform, auth=ctx.upstream.engine_auth(entry.pull.api_host))
        images[platform] = engine.build(
            entry.context,
            tag=local_ref(entry, platform),
            platform=platform,
            buildargs={**entry.build_args, "BASE_IMAGE": base},
            labels=labels,
            dockerfile=entry.dockerfile.relative_to(entry.context).as_posix(),
        )
    host = engine.host_platform()
    if host in images:
        for tag in entry.tag_refs:
            engine.tag(images[host], tag)
    if not smoke:
        return Built(images, [], list(images))
    return smoke_entry(ctx, entry, images)


def smoke_entry(ctx: Context, entry: Entry, images: Mapping[str, str]) -> Built:
    from ci_images.smoke.probe import smoke_test  # imports boto3 and hvac: only when a smoke test runs

    engine = ctx.engine
    smoked: list[str] = []
    unsmoked: list[str] = []
    for platform, image in images.items():
        if entry.smoke is None:
            unsmoked.append(platform)
            continue
        if not engine.can_run(platform):
            log.warning(
                f"{entry.key}: this host cannot run {platform} (no QEMU binfmt handler): smoke test skipped"
            )
            unsmoked.append(platform)
            continue
        ctx.check_cancelled(f"the {platform} smoke test")
        log.info(f"{entry.key}: smoke test '{entry.smoke}' on {platform}")
        smoke_test(engine, entry.smoke, image, platform=platform)
        smoked.append(platform)
    return Built(dict(images), smoked, unsmoked)


def local_images(ctx: Context, entry: Entry) -> dict[str, str]:
    """The images `build-images` left in the engine for ``entry``: a UsageError names the missing ones."""
    engine = ctx.engine
    found: dict[str, str] = {}
    missing: list[str] = []
    for platform in entry.platforms:
        ref = local_ref(entry, platform)
        if engine.has_image(ref):
            found[platform] = ref
        else:
            missing.append(platform)
    if not found:
        raise UsageError(
            f"{entry.key} is not built (looked for {', '.join(local_ref(entry, p) for p in missing)})",
            fix="run `invoke build-images` (with the same --images and --catalog) first",
        )
    if missing:
        log.warning(f"{entry.key}: not built for {', '.join(missing)}; testing {', '.join(found)}")
    return found


def mirror_entry(ctx: Context, decision: Decision) -> Built:
    """Mirror mode: bring each platform's upstream image into the engine unchanged and smoke-test it there."""
    entry = decision.entry
    assert decision.source_digest is not None
    platform_digests = _pull_base(ctx, entry, decision.source_digest)
    images: dict[str, str] = {}
    for platform in entry.platforms:
        ref = entry.pull.with_digest(platform_digests[platform])
        ctx.engine.pull(ref, platform=platform, auth=ctx.upstream.engine_auth(entry.pull.api_host))
        images[platform] = ref
    return smoke_entry(ctx, entry, images)
