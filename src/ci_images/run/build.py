"""Make an entry's images: build every platform FROM its own upstream digest (or bring a mirrored image in), then
smoke-test every platform the host can run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ci_images.engine.runs import run_tag
from ci_images.errors import CiImagesError, UsageError
from ci_images.log import log
from ci_images.oci import Descriptor, require_platforms
from ci_images.plan import recipe
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.registry import documents
from ci_images.registry.push import BaseLayers, read_base_layers
from ci_images.run.context import Context
from ci_images.run.resolve import upstream_manifest


def _platforms_fix(entry: Entry) -> str:
    return (
        f"give {entry.image} {entry.version} the platforms upstream publishes: platforms: [...] on the version in "
        "the catalog"
    )


def local_ref(entry: Entry, platform: str) -> str:
    """Where build-images leaves one platform's build for test-images (the classic store keeps one image per
    reference): what a user asked for, so the last run to build it holds the name, as with `docker build -t`."""
    return f"ci-images/{entry.image}:{entry.tags[0]}-{platform.replace('/', '-')}"


def run_ref(entry: Entry, platform: str, run_id: str) -> str:
    """The reference one run builds under: no other run names it, so none removes or moves it meanwhile
    (``ci-images/vault:2.0.0-linux-amd64.run-RUNID``; engine/runs.py reaps those of ended runs)."""
    return run_tag(local_ref(entry, platform), run_id)


@dataclass
class Built:
    """The engine images of one entry, per platform, and what the smoke tests said."""

    images: dict[str, str]
    smoked: list[str]
    unsmoked: list[str]
    # platform -> the base it was built FROM upstream: its layers are uploaded as upstream's own blobs
    bases: dict[str, BaseLayers] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # platform -> this run's reference (run_ref)


def upstream_platforms(ctx: Context, entry: Entry, source_digest: str) -> dict[str, str]:
    """Upstream's per-platform manifest digests for ``source_digest`` (its index, read once per run; a single
    manifest is its own one platform)."""
    _, body = upstream_manifest(ctx, entry, source_digest)
    digests = documents.index_platforms(body)
    if digests is None:
        client = ctx.upstream_pool.get(entry.pull.api_host)
        digests = {documents.manifest_platform(client, entry.pull.path, body): source_digest}
    return digests


def _pull_base(ctx: Context, entry: Entry, source_digest: str) -> dict[str, str]:
    """Per-platform upstream manifest digests of the platforms the entry builds (all of them must exist)."""
    digests = upstream_platforms(ctx, entry, source_digest)
    require_platforms(entry.pull_ref, entry.platforms, digests, fix=_platforms_fix(entry))
    # The engine pulls each platform's manifest once per run (the variants of a version share the pulled bases).
    key = ("pulls", entry.pull.api_host, entry.pull.path, source_digest, *entry.platforms)
    ctx.once(key, lambda: ctx.budget.spend(len(entry.platforms), what=entry.key))
    return digests


def build_entry(
    ctx: Context,
    decision: Decision,
    *,
    revision: str,
    created: str,
    source_url: str,
    smoke: bool = True,
    keep: bool = True,
) -> Built:
    """Build every platform under this run's own references; with ``keep`` (build-images, --keep-images) also
    under the names a user reads (local_ref, and the target tags for the host's platform)."""
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
    refs: dict[str, str] = {}
    try:
        for platform in entry.platforms:
            ctx.check_cancelled(f"building {platform}")
            base = entry.pull.with_digest(platform_digests[platform])
            log.info(f"{entry.key}: building {platform} FROM {base}")
            engine.pull(base, platform=platform, auth=ctx.upstream_pool.engine_auth(entry.pull.api_host))
            refs[platform] = run_ref(entry, platform, engine.run_id)
            images[platform] = engine.build(
                entry.context,
                tag=refs[platform],
                platform=platform,
                buildargs={**entry.build_args, "BASE_IMAGE": base},
                labels=labels,
                dockerfile=entry.dockerfile.relative_to(entry.context).as_posix(),
            )
        if keep:
            _name_builds(ctx, entry, images)
        bases = {platform: base_layers(ctx, entry, platform_digests[platform]) for platform in images}
        built = Built(images, [], list(images), bases, refs)
        if smoke:
            built = replace(smoke_entry(ctx, entry, images), bases=bases, refs=refs)
    except CiImagesError:
        release_builds(ctx, entry, refs)
        raise
    return built


def _name_builds(ctx: Context, entry: Entry, images: Mapping[str, str]) -> None:
    """The names build-images leaves: local_ref per platform (test-images reads it), the target tags for the host."""
    engine = ctx.engine
    for platform, image in images.items():
        engine.tag(image, local_ref(entry, platform))
    host = engine.host_platform()
    if host in images:
        for tag in entry.tag_refs:
            engine.tag(images[host], tag)


def release_builds(ctx: Context, entry: Entry, refs: Mapping[str, str]) -> None:
    """Drop this run's references: an image goes with its last reference (not while a container uses it, nor while
    build-images' names or another run's reference hold it). Never fails the entry: its tags may have moved."""
    for ref in refs.values():
        outcome = ctx.engine.release(ref)
        if outcome == "in use":
            log.info(f"{entry.key}: {ref} left: a container of another run uses it (a later run removes it)")
        elif outcome not in ("removed", "gone"):
            log.warning(f"{entry.key}: could not remove {ref}: {outcome}")


def pull_for_smoke(
    ctx: Context, entry: Entry, refs: Mapping[str, str], auth: Mapping[str, str] | None
) -> dict[str, str]:
    """Pull each platform of ``refs`` (platform -> image by digest) the host can run, and name it for this run
    (``run_ref``): the smoke test still runs the digest (what a failure names), ``release_builds`` drops the name
    afterwards (the image goes with it unless another run's name holds it), and a killed run's pull is reaped by the
    next run like its builds. Returns platform -> the run's name, for the platforms pulled."""
    engine = ctx.engine
    named: dict[str, str] = {}
    try:
        for platform, ref in refs.items():
            if not engine.can_run(platform):
                continue
            ctx.check_cancelled(f"pulling {platform}")
            log.info(f"{entry.key}: pulling {platform} from the target for its smoke test: {ref}")
            engine.pull(ref, platform=platform, auth=auth)
            name = run_ref(entry, platform, engine.run_id)
            engine.tag(ref, name)
            named[platform] = name
    except BaseException:
        release_builds(ctx, entry, named)
        raise
    return named


def base_layers(ctx: Context, entry: Entry, manifest_digest: str) -> BaseLayers:
    """The upstream base of one platform's build; its layer list is read when first published (a manifest GET,
    spent from the budget, once per run per base)."""
    host, repo = entry.pull.api_host, entry.pull.path

    def read() -> dict[str, Descriptor]:
        ctx.budget.spend(1, what=entry.key)
        return read_base_layers(ctx.upstream_pool.get(host), repo, manifest_digest)

    return BaseLayers(
        host=host,
        repo=repo,
        client=lambda: ctx.upstream_pool.get(host),
        layers=lambda: ctx.once(("base-layers", host, repo, manifest_digest), read),
    )


def smoke_entry(ctx: Context, entry: Entry, images: Mapping[str, str]) -> Built:
    if entry.smoke is None:  # nothing to run: no engine needed (nor the docker SDK, nor the probes' clients)
        return Built(dict(images), [], list(images))
    from ci_images.run.clients import client_images
    from ci_images.smoke.probe import smoke_test  # imports boto3 and hvac: only when a smoke test runs

    engine = ctx.engine
    smoked: list[str] = []
    unsmoked: list[str] = []
    for platform, image in images.items():
        if not engine.can_run(platform):
            log.warning(
                f"{entry.key}: this host cannot run {platform} (no QEMU binfmt handler): smoke test skipped"
            )
            unsmoked.append(platform)
            continue
        ctx.check_cancelled(f"the {platform} smoke test")
        log.info(f"{entry.key}: smoke test '{entry.smoke}' on {platform}")
        smoke_test(engine, entry.smoke, image, platform=platform, client_image=client_images(ctx))
        smoked.append(platform)
    return Built(dict(images), smoked, unsmoked)


def local_images(ctx: Context, entry: Entry) -> dict[str, str]:
    """The images `build-images` left in the engine for ``entry``: a UsageError names the missing ones."""
    engine = ctx.engine
    found: dict[str, str] = {}
    missing: list[str] = []
    platforms = list(entry.platforms)
    if not platforms:  # a mirror of every platform upstream has: the ones build-images pulled
        repository, _, prefix = local_ref(entry, "").rpartition(":")
        platforms = [
            tag.removeprefix(prefix).replace("-", "/")
            for tag in sorted(engine.local_tags(repository))
            if tag.startswith(prefix)
        ] or ["linux/amd64"]
    for platform in platforms:
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


def pull_upstream_images(ctx: Context, entry: Entry, source_digest: str) -> dict[str, str]:
    """Upstream's own images of a mirror entry, pulled into the engine by digest: what is smoke-tested when nothing
    is copied to a target (build-images, a dry run)."""
    digests = upstream_platforms(ctx, entry, source_digest)
    platforms = list(entry.platforms) or sorted(digests)
    require_platforms(entry.pull_ref, platforms, digests, fix=_platforms_fix(entry))
    images: dict[str, str] = {}
    host = ctx.engine.host_platform() if entry.smoke is not None else None
    for platform in platforms:
        ref = entry.pull.with_digest(digests[platform])
        if entry.smoke is not None and ctx.engine.can_run(platform):
            ctx.budget.spend(1, what=entry.key)
            ctx.engine.pull(ref, platform=platform, auth=ctx.upstream_pool.engine_auth(entry.pull.api_host))
            # Where test-images finds it, and (the host's) under the target tags: as for a build.
            for tag in [local_ref(entry, platform), *(entry.tag_refs if platform == host else ())]:
                ctx.engine.tag(ref, tag)
        images[platform] = ref
    return images
