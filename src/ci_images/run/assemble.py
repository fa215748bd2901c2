"""Assembled entries: a Dockerfile of metadata and context copies made into registry documents, no engine build.

Per entry: upstream's per-platform base manifests and configs are read (a manifest GET per platform, once per run),
the Dockerfile is carried out on each (``ci_images.assemble``: one reproducible layer per COPY/ADD, a new config, the
manifest in the base's media-type family), and an OCI index is made over them. Its labels and time come from the
inputs only (``run/reproducible.py``), so the same catalog, Dockerfile, context and base digest give the same index
digest on any machine.

push-images then uploads every platform and the index by digest, untagged (base layers copied registry to registry),
pulls each platform the host can run from the target by digest into the engine and smoke-tests it, and only then has
the publisher move the tags: a failed smoke test moves no tag and names the digest. build-images (and a dry run, which
uploads nothing to the target) stages the images in the embedded local registry instead, pulls them into the engine
from there, and tags them as an engine build would be tagged, so test-images finds them.

When the base itself needs the engine (ONBUILD triggers, which only its config shows), the entry is built by the
engine instead and its result says why.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ci_images.assemble.dockerfile import NotAssemblable, read_dockerfile
from ci_images.assemble.image import PlatformImage, assemble_platform, image_index
from ci_images.assemble.recipe import rfc3339
from ci_images.errors import BuildError, RegistryError, SmokeError
from ci_images.log import log
from ci_images.oci import require_platforms, short_digest
from ci_images.plan import recipe as recipes
from ci_images.plan.builds import ASSEMBLED, ENGINE
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.registry.copy import Endpoint
from ci_images.run.build import (
    Built,
    local_ref,
    pull_for_smoke,
    release_builds,
    smoke_entry,
    upstream_platforms,
)
from ci_images.run.context import Context
from ci_images.run.reproducible import SourceTime, source_time
from ci_images.run.result import Result
from ci_images.run.settings import RunSettings

if TYPE_CHECKING:
    from ci_images.run.publish import Publisher

STAGING_PATH = "ci-images-staging"  # repositories under the embedded registry where build-images stages


@dataclass(frozen=True)
class Assembled:
    """One entry's images (in the entry's platform order), the index over them, and the time they record."""

    images: tuple[PlatformImage, ...]
    index: bytes
    digest: str
    when: SourceTime

    @property
    def platforms(self) -> dict[str, str]:
        """platform -> its manifest digest."""
        return {image.platform: image.manifest_digest for image in self.images}


def base_documents(ctx: Context, entry: Entry, manifest_digest: str) -> tuple[bytes, bytes]:
    """The upstream base manifest of one platform and its config (a manifest GET, spent from the pull budget, and a
    blob GET), read once per run for every entry built on it."""
    host, repo = entry.pull.api_host, entry.pull.path

    def read() -> tuple[bytes, bytes]:
        ctx.budget.spend(1, what=entry.key)
        client = ctx.upstream_pool.get(host)
        got = client.get_manifest(repo, manifest_digest)
        if got is None:
            raise RegistryError(
                f"upstream {entry.pull.with_digest(manifest_digest)} vanished after the plan", fix="run again"
            )
        config_digest = json.loads(got[1])["config"]["digest"]
        return got[1], client.get_blob(repo, config_digest)

    return ctx.once(("base-documents", host, repo, manifest_digest), read)


def assemble_entry(
    ctx: Context, entry: Entry, *, source_digest: str, recipe: str, source_url: str, directory: Path
) -> Assembled:
    """Assemble every platform of ``entry`` on upstream's ``source_digest``, new layers written into ``directory``.
    Raises NotAssemblable when the base needs the engine after all."""
    assert entry.context is not None and entry.dockerfile is not None
    context, dockerfile_path = entry.context, entry.dockerfile
    digests = upstream_platforms(ctx, entry, source_digest)
    require_platforms(
        entry.pull_ref,
        entry.platforms,
        digests,
        fix=f"give {entry.image} {entry.version} the platforms upstream publishes: platforms: [...] on the version",
    )
    when = ctx.once(("source-time", str(context)), lambda: source_time(context, ctx.env))
    labels = recipes.image_labels(
        entry,
        source_digest=source_digest,
        recipe=recipe,
        revision=when.revision,
        source_url=source_url,
        created=rfc3339(when.epoch),
    )
    dockerfile_name = dockerfile_path.relative_to(context).as_posix()
    dockerfile = read_dockerfile(dockerfile_path, display=f"{context.name}/{dockerfile_name}")
    images = []
    for platform in entry.platforms:
        manifest, config = base_documents(ctx, entry, digests[platform])
        image = assemble_platform(
            dockerfile,
            context,
            # The canonical reference, never the mirror's: the same on every machine.
            build_args={**entry.build_args, "BASE_IMAGE": entry.source.with_digest(digests[platform])},
            base_manifest=manifest,
            base_config=config,
            epoch=when.epoch,
            directory=directory,
            labels=labels,
            dockerfile_name=dockerfile_name,
        )
        if image.platform != platform:
            raise BuildError(
                f"{entry.key}: upstream's {platform} manifest {short_digest(digests[platform])} is {image.platform}",
                fix="report it upstream; meanwhile leave that platform out of the catalog's platforms",
            )
        images.append(image)
    annotations = {**{k: v for k, v in labels.items() if v}, recipes.BUILT_LABEL: ASSEMBLED}
    index, digest = image_index(images, annotations=annotations)
    return Assembled(tuple(images), index, digest, when)


def run_assembled(
    ctx: Context, decision: Decision, settings: RunSettings, publisher: Publisher | None, base: Result
) -> Result | str:
    """Assemble, upload, smoke-test and publish one entry (or, with nothing to upload to, stage it locally and
    smoke-test it). A string instead of a result: why the engine must build it after all."""
    entry = decision.entry
    assert decision.source_digest is not None and decision.recipe is not None
    with tempfile.TemporaryDirectory(prefix="ci-images-assemble-") as directory:
        try:
            assembled = assemble_entry(
                ctx,
                entry,
                source_digest=decision.source_digest,
                recipe=decision.recipe,
                source_url=settings.source_url,
                directory=Path(directory),
            )
        except NotAssemblable as exc:
            log.warning(f"{entry.key}: {exc}: built by the engine instead")
            return f"the engine builds it: {exc}"
        log.info(
            f"{entry.key}: assembled {', '.join(assembled.platforms)} (no engine build): "
            f"{short_digest(assembled.digest)}, created {rfc3339(assembled.when.epoch)} ({assembled.when.origin})"
        )
        ctx.check_cancelled("uploading")
        staged = (
            settings.publish
            and publisher is not None
            and publisher.stage_assembled(entry, decision, assembled)
        )
        if not staged:
            built = stage_locally(ctx, entry, assembled, smoke=settings.smoke)
            return replace(base, action="built", smoked=built.smoked, built=ASSEMBLED)
    assert publisher is not None
    smoked = smoke_from_target(ctx, entry, assembled, smoke=settings.smoke, keep=settings.keep_images)
    ctx.check_cancelled("moving its tags")
    digest, previous = publisher.publish_index(entry, decision, assembled.index)
    return replace(
        base, action="built", digest=digest, previous_digests=previous, smoked=smoked, built=ASSEMBLED
    )


def smoke_from_target(
    ctx: Context, entry: Entry, assembled: Assembled, *, smoke: bool, keep: bool
) -> list[str]:
    """What consumers get: each platform the host can run, pulled from the target by digest (with the target's
    credentials) and smoke-tested. A failure names the digest; no tag has moved."""
    if not smoke or entry.smoke is None:
        return []
    refs = {platform: entry.target.with_digest(digest) for platform, digest in assembled.platforms.items()}
    named = pull_for_smoke(ctx, entry, refs, ctx.target_pool.engine_auth(entry.target.api_host))
    try:
        return smoke_entry(ctx, entry, refs).smoked
    except SmokeError as exc:
        raise SmokeError(
            f"{exc.message}\nno tag moved: {entry.target.with_digest(assembled.digest)} stays untagged",
            fix=exc.fix,
        ) from exc
    finally:
        if (
            keep
        ):  # --keep-images: tagged as an engine build is (each platform; the host's under the target tags)
            _tag_pulled(ctx, entry, named)
        release_builds(ctx, entry, named)


def _tag_pulled(ctx: Context, entry: Entry, refs: Mapping[str, str]) -> None:
    engine = ctx.engine
    host = engine.host_platform()
    for platform, ref in refs.items():
        for tag in [local_ref(entry, platform), *(entry.tag_refs if platform == host else ())]:
            engine.tag(ref, tag)


def _staging(ctx: Context) -> Endpoint:
    """The embedded local registry as a staging area (started on demand, kept running like `--registry local`)."""
    from ci_images.cache import cache_home
    from ci_images.loopback.local import ensure_local_registry
    from ci_images.oci import LOCAL_REGISTRY_PORT
    from ci_images.registry.client import RegistryClient
    from ci_images.registry.pool import ClientPool

    def start() -> Endpoint:
        server = ensure_local_registry(cache_home(ctx.env), LOCAL_REGISTRY_PORT)
        pool = ClientPool(lambda host: RegistryClient(host, plain_http=True))
        return Endpoint(pool, server.host, STAGING_PATH)

    return ctx.once(("staging registry",), start)


def stage_locally(ctx: Context, entry: Entry, assembled: Assembled, *, smoke: bool) -> Built:
    """build-images, and a dry run: the images go to the embedded local registry (base layers copied from upstream),
    the engine pulls every platform from there by digest, and they are tagged as a build would be (``local_ref``;
    the host's platform also under the target tags), then smoke-tested when ``smoke``."""
    from ci_images.registry.assembled import upload_assembled

    staging = _staging(ctx)
    target = replace(staging, repo=f"{STAGING_PATH}/{entry.image}")
    source = Endpoint(ctx.upstream_pool, entry.pull.api_host, entry.pull.path)
    log.info(f"{entry.key}: staging {', '.join(assembled.platforms)} in {target} for the engine")
    upload_assembled(assembled.images, assembled.index, source=source, target=target)
    staged: dict[str, str] = {}
    for platform, digest in assembled.platforms.items():
        ctx.check_cancelled(f"pulling {platform}")
        staged[platform] = f"{target}@{digest}"
        ctx.engine.pull(staged[platform], platform=platform)
    _tag_pulled(ctx, entry, staged)
    images = {platform: local_ref(entry, platform) for platform in staged}
    if not smoke:
        return Built(images, [], list(images))
    return smoke_entry(ctx, entry, images)


def engine_fallback(base: Result, why: str) -> Result:
    """The result an entry starts from when the engine builds it after all."""
    return replace(base, reason=f"{base.reason}; {why}", built=ENGINE)
