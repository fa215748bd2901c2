"""The pipeline: resolve the plan against the registries, then build, smoke-test and publish it.

Order of events for an entry that needs work: resolve the upstream index to per-platform digests, build every
platform FROM its own digest, smoke-test every platform the host can run, upload every platform by digest, and only
then write the index under the entry's tags. A failure anywhere before the last step leaves every tag as it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ci_images.errors import CiImagesError, RegistryError, UpstreamUnreachableError, UsageError
from ci_images.log import log
from ci_images.plan import recipe
from ci_images.plan.entries import Decision, Entry, TargetState, decide
from ci_images.registry import oci
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.run.publish import Publisher
from ci_images.run.report import Result

if TYPE_CHECKING:
    from ci_images.engine.client import Engine

T = TypeVar("T")
DEFAULT_SOURCE_URL = "https://github.com/getsops/ci-container-images"


@dataclass
class Context:
    """Everything a run needs: the pools of registry clients, the engine, and run-wide settings."""

    upstream: ClientPool
    target: ClientPool | None
    engine_factory: Callable[[], Engine]
    env: Mapping[str, str]
    root: Path
    budget: RateBudget = field(default_factory=RateBudget)
    _engine: Engine | None = None
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)
    _memo: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _memo_locks: dict[tuple[str, ...], threading.Lock] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = self.engine_factory()
            return self._engine

    def once(self, key: tuple[str, ...], compute: Callable[[], T]) -> T:
        """``compute()`` once per run for ``key``, also when threads ask at the same time: variants of one version
        share their upstream tag, and a second GET of its index would cost another Docker Hub pull."""
        with self._engine_lock:
            lock = self._memo_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                self._memo[key] = compute()
            result: T = self._memo[key]
            return result


def local_ref(entry: Entry, platform: str) -> str:
    """Where one platform's build lives in the engine (the classic store keeps one image per reference)."""
    return f"ci-images/{entry.image}:{entry.tags[0]}-{platform.replace('/', '-')}"


# ---- resolve -----------------------------------------------------------------------------------------------------


def _upstream_digest(ctx: Context, entry: Entry) -> str:
    client = ctx.upstream.get(entry.pull.api_host)
    key = ("head", entry.pull.api_host, entry.pull.path, entry.version)
    try:
        info = ctx.once(key, lambda: client.head_manifest(entry.pull.path, entry.version))
    except UpstreamUnreachableError as exc:
        raise UpstreamUnreachableError(
            f"cannot reach upstream {entry.pull.host} for {entry.pull_ref}: {exc.message}",
            fix=(
                "check the network, or point CI_IMAGES_UPSTREAM_MIRROR (or the catalog's upstream_mirror) at a "
                "Docker Hub mirror you can reach, e.g. the lab's upstream printed by `invoke lab-up`"
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


def _target_state(ctx: Context, entry: Entry) -> TargetState:
    assert ctx.target is not None
    client = ctx.target.get(entry.target.api_host)
    held = oci.read_labels(client, entry.target.path, entry.tags[0])
    if held is None:
        return TargetState(digest=None)
    digest, labels = held
    tag_digests: dict[str, str | None] = {entry.tags[0]: digest}
    for tag in entry.tags[1:]:
        info = client.head_manifest(entry.target.path, tag)
        tag_digests[tag] = info.digest if info else None
    return TargetState(digest=digest, labels=labels, tag_digests=tag_digests)


def entry_recipe(entry: Entry, source_digest: str) -> str:
    if entry.mode == "build":
        return recipe.recipe_hash(entry, source_digest)
    return recipe.mirror_recipe(entry, source_digest)


def resolve(
    ctx: Context, entries: Sequence[Entry], *, check_target: bool, force: bool = False, jobs: int = 8
) -> list[Decision]:
    """HEAD every upstream tag (and the target's tags when publishing), in parallel, and decide per entry.

    HEAD requests do not count against Docker Hub's pull limit, so this costs nothing when nothing changed.
    """

    def one(entry: Entry) -> Decision:
        try:
            return decide_one(entry)
        except UpstreamUnreachableError:
            raise  # the whole run needs upstream: stop early with the mirror hint
        except CiImagesError as exc:
            # e.g. a version upstream does not have: that entry fails, the others go on.
            return Decision(entry, "error", exc.render(), None, None, TargetState(digest=None))

    def decide_one(entry: Entry) -> Decision:
        source_digest = _upstream_digest(ctx, entry)
        entry_hash = entry_recipe(entry, source_digest)
        if not check_target:
            return Decision(
                entry, entry.mode, "requested", source_digest, entry_hash, TargetState(digest=None)
            )
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


# ---- execute -----------------------------------------------------------------------------------------------------


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


class PlanError(CiImagesError):
    """An entry the plan could not resolve (its message is the original error, fix included)."""

    exit_code = 3


@dataclass
class RunSettings:
    jobs: int = 2
    fail_fast: bool = False
    publish: bool = False  # upload and move tags (push-images); False: build/test only
    smoke: bool = True
    revision: str = "unknown"
    created: str = ""
    source_url: str = DEFAULT_SOURCE_URL


def execute(
    ctx: Context, decisions: Sequence[Decision], settings: RunSettings, publisher: Publisher | None
) -> list[Result]:
    """Run every decision; one entry failing does not stop the others unless ``fail_fast``."""
    results: dict[int, Result] = {}
    stop = threading.Event()

    def one(index: int, decision: Decision) -> Result:
        started = time.monotonic()
        entry = decision.entry
        base = Result.from_decision(decision, ratelimit_remaining=ctx.budget.remaining)
        if stop.is_set():
            return replace(base, action="failed", reason="not started: an earlier entry failed (--fail-fast)")
        with log.group(f"{entry.key}: {decision.action} ({decision.reason})"):
            try:
                result = _run_one(ctx, decision, settings, publisher, base)
            except CiImagesError as exc:
                log.error(f"{entry.key}: {exc.render()}", title=f"{entry.key} failed")
                if settings.fail_fast:
                    stop.set()
                result = replace(
                    base, action="failed", reason=exc.message.splitlines()[0][:300], error=exc.render()
                )
        return replace(
            result, duration_s=round(time.monotonic() - started, 2), ratelimit_remaining=ctx.budget.remaining
        )

    with (
        log.progress(len(decisions), "images") as advance,
        ThreadPoolExecutor(max_workers=max(1, settings.jobs), thread_name_prefix="entry") as pool,
    ):
        pending: dict[Future[Result], int] = {pool.submit(one, i, d): i for i, d in enumerate(decisions)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
                    advance()
        except KeyboardInterrupt:
            stop.set()
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(decisions))]


def _run_one(
    ctx: Context, decision: Decision, settings: RunSettings, publisher: Publisher | None, base: Result
) -> Result:
    entry = decision.entry
    if decision.action == "error":
        raise PlanError(decision.reason)
    if decision.action == "skip":
        log.info(f"{entry.key}: up to date ({base.digest})")
        return replace(base, action="skipped")
    if decision.action == "retag":
        assert publisher is not None and decision.current.digest is not None
        moved = publisher.retag(entry, decision.current.digest, decision.current.tag_digests)
        return replace(base, action="retagged", digest=decision.current.digest, previous_digests=moved)
    ctx.budget.check(entry.key)
    if decision.action == "mirror":
        built = mirror_entry(ctx, decision)
    elif decision.action == "test":
        built = smoke_entry(ctx, entry, local_images(ctx, entry))
        return replace(base, action="tested", smoked=built.smoked)
    else:
        built = build_entry(
            ctx,
            decision,
            revision=settings.revision,
            created=settings.created,
            source_url=settings.source_url,
            smoke=settings.smoke,
        )
    if not settings.publish or publisher is None:
        return replace(base, action="built", smoked=built.smoked)
    digest, previous = publisher.publish(entry, decision, built.images)
    return replace(base, action="built", digest=digest, previous_digests=previous, smoked=built.smoked)


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
