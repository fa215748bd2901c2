"""The commands behind both doors: each takes the parsed Options and goes catalog -> plan -> adapters -> run ->
report. Output for people goes to the log (standard error), output for machines to standard output or --json.

A command returns normally or raises a CiImagesError; the doors (``ci_images.cli``) turn that into its exit code.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images.cache import cache_home, machine_lock
from ci_images.catalog.model import Catalog
from ci_images.errors import UsageError
from ci_images.log import log
from ci_images.options import Options
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.matrix import job_matrix
from ci_images.registry.auth import resolve_upstream_credentials
from ci_images.run import lockfile, report
from ci_images.run.context import Context
from ci_images.run.execute import execute
from ci_images.run.publish import DryRunPublisher, Publisher, RegistryPublisher
from ci_images.run.resolve import resolve
from ci_images.values import local_address
from ci_images.wiring import (
    DEFAULT_SOURCE_URL,
    build_prefix,
    catalog_tags,
    context,
    emit_json,
    entries_for,
    finish,
    load,
    lock_file,
    preflight,
    raise_unresolved,
    run_settings_for,
    target,
    target_pool,
)

if TYPE_CHECKING:
    from ci_images.sign.signer import Signer


# ---- commands ----------------------------------------------------------------------------------------------------


def list_images(options: Options) -> list[dict[str, Any]]:
    catalog = load(options)
    if not (options.registry or catalog.registry):
        options = replace(
            options, registry="local"
        )  # listing needs a prefix to show tags; nothing is started
    prefix = target(options, catalog, start_local=False).prefix
    rows = [e.as_row() for e in entries_for(options, catalog, prefix=prefix)]
    if not emit_json(options, rows):
        width = max((len(row["image"]) for row in rows), default=0)
        for row in rows:
            tags = ", ".join(row["tags"])
            platforms = ",".join(row["platforms"])
            sys.stdout.write(
                f"{row['image']:<{width}} {row['variant']:<8} {row['version']:<10} {row['mode']:<6} {row['source']}  ->  {tags}  [{platforms}]\n"
            )
    return rows


def make_plan(
    options: Options, *, start_local: bool = True, lock: bool = False
) -> tuple[Catalog, Context, list[Decision]]:
    """Resolve upstream and target state; nothing is built or pushed."""
    catalog = load(options)
    where = target(options, catalog, start_local=False)
    entries = entries_for(options, catalog, prefix=where.prefix)
    preflight(options, catalog, where, lock=lock_file(options, catalog) if lock else None)
    ctx = context(options, catalog, target_pool=target_pool(options, where.plain_http))
    before_target = None
    if start_local and where.local_port is not None:
        # Started at the first read of the target, after an upstream answered (once, whichever of resolve's
        # threads gets there first): a run that cannot reach upstream stops without leaving a registry behind.
        def before_target() -> None:
            ctx.once(("start the local registry",), lambda: target(options, catalog, start_local=True))

    decisions = resolve(ctx, entries, check_target=True, force=options.force, before_target=before_target)
    return catalog, ctx, decisions


def show_plan(options: Options) -> list[Decision]:
    _, ctx, decisions = make_plan(options)
    try:
        if not emit_json(options, [d.as_record() for d in decisions]):
            for d in decisions:
                sys.stdout.write(f"{d.entry.key:<32} {d.action:<7} {d.reason}\n")
            if ctx.budget.remaining is not None:
                sys.stdout.write(f"upstream pull quota: {ctx.budget.remaining} of {ctx.budget.limit} left\n")
    finally:
        ctx.close()
    raise_unresolved(decisions)
    return decisions


def matrix(options: Options) -> dict[str, list[dict[str, object]]]:
    """The plan as a GitHub Actions matrix: one job per image that has work to do."""
    _, ctx, decisions = make_plan(options)
    ctx.close()
    result = job_matrix(decisions)
    sys.stdout.write(json.dumps(result) + "\n")
    log.set_output("matrix", json.dumps(result))
    return result


def build_images(options: Options, *, smoke: bool = False) -> list[report.Result]:
    catalog = load(options)
    entries = entries_for(options, catalog, prefix=build_prefix(options, catalog))
    resolve_upstream_credentials(options.env)
    ctx = context(options, catalog, target_pool=None)
    try:
        decisions = resolve(ctx, entries, check_target=False)
        results = execute(
            ctx, decisions, run_settings_for(options, catalog, publish=False, smoke=smoke), None
        )
    finally:
        ctx.close()
    finish(results, ctx, options, title="ci-images: build")
    return results


def test_images(options: Options) -> list[report.Result]:
    catalog = load(options)
    entries = entries_for(options, catalog, prefix=build_prefix(options, catalog))
    ctx = context(options, catalog, target_pool=None)
    decisions = [
        Decision(e, "test", "smoke test of the local build", None, None, TargetState(None)) for e in entries
    ]
    try:
        results = execute(ctx, decisions, run_settings_for(options, catalog, publish=False), None)
    finally:
        ctx.close()
    finish(results, ctx, options, title="ci-images: smoke tests")
    return results


def _one_publisher_at_a_time(options: Options) -> contextlib.AbstractContextManager[None]:
    """Runs that publish to one target on this machine take turns, from plan to lock file: the second one plans
    after the first has finished, so it sees what the first published (and skips it), and the lock file ends
    the same as the registry. Across machines the publishing workflow's concurrency group plays this part."""
    catalog = load(options)
    prefix = target(options, catalog, start_local=False).prefix
    return machine_lock(
        f"publish:{prefix}",
        on_wait=lambda: log.info(
            f"another ci-images run is publishing to {prefix}: waiting for it to finish"
        ),
    )


def signer_for(options: Options) -> Signer | None:
    """The signer the options ask for (a key, or keyless), checked now; None when nothing is to be signed. The
    signing modules (cryptography, PyNaCl) load only then."""
    if not (options.signing_key or options.keyless):
        return None
    from ci_images.run import signatures

    return signatures.configured_signer(
        options.signing_key, options.keyless, options.env, default_url=DEFAULT_SOURCE_URL
    )


def push_images(options: Options) -> list[report.Result]:
    signer = signer_for(options)  # first: a wrong COSIGN_PASSWORD stops the run (exit 2) before anything else
    if options.dry_run:
        return _push_images(options, signer)
    with _one_publisher_at_a_time(options):
        return _push_images(options, signer)


def _push_images(options: Options, signer: Signer | None) -> list[report.Result]:
    catalog, ctx, decisions = make_plan(options, lock=not options.dry_run)
    try:
        refuse_narrowing(options, catalog, decisions)
        assert ctx.target is not None
        publisher: Publisher = (
            DryRunPublisher()
            if options.dry_run
            else RegistryPublisher(
                lambda: ctx.engine, ctx.target, ctx.cancel, upstream=ctx.upstream, budget=ctx.budget
            )
        )
        if signer is not None and options.dry_run:
            log.info(f"dry run: would sign what the tags point to ({signer.mode}: {signer.signer})")
        settings = run_settings_for(options, catalog, publish=True)
        results = execute(ctx, decisions, settings, publisher, None if options.dry_run else signer)
        if options.dry_run:
            modes = {d.entry.key: d.entry.mode for d in decisions}
            results = [_dry_run_note(r, modes.get(r.key)) for r in results]
        else:
            lock = lock_file(options, catalog)
            lockfile.update_lock(lock, results, catalog_tags=catalog_tags(options, catalog))
            log.info(f"lock file: {lock}")
    finally:
        ctx.close()
    finish(results, ctx, options, title="ci-images: push")
    return results


def _dry_run_note(result: report.Result, mode: str | None) -> report.Result:
    """A dry run's result is marked as one; what would have changed the target says that nothing was pushed."""
    if result.action not in report.CHANGING_ACTIONS:
        return replace(result, dry_run=True)
    done = {
        "retagged": "tags not moved",
        "mirrored": "nothing copied",
    }.get(
        result.action,
        "upstream's images pulled and smoke-tested, nothing copied"
        if mode == "mirror"
        else "built and smoke-tested, nothing pushed",
    )
    return replace(result, dry_run=True, reason=f"{result.reason}; dry run: {done}")


def refuse_narrowing(options: Options, catalog: Catalog, decisions: list[Decision]) -> None:
    """--platform narrows what is built and tested. Publishing with it would replace a published index with one of
    fewer platforms than the catalog asks for, silently: refused (exit 2) before anything is built. A new tag may be
    published narrow (a laptop without emulation pushing to a local registry); the catalog's ``platforms:`` narrows
    for good."""
    if not options.platforms:
        return
    prefix = target(options, catalog, start_local=False).prefix
    asked = {  # what the catalog asks for per entry, without --platform (empty: all that upstream has)
        e.key: set(e.platforms) for e in entries_for(replace(options, platforms=()), catalog, prefix=prefix)
    }
    dropped = []
    for d in decisions:
        held = set(d.current.platforms or ())
        wanted = asked.get(d.entry.key) or held
        lost = (held & wanted) - set(d.entry.platforms) if d.action in ("build", "mirror") else set()
        if lost:
            dropped.append(
                f"{d.entry.target.with_tag(d.entry.tags[0])} (would lose {', '.join(sorted(lost))})"
            )
    if dropped:
        raise UsageError(
            f"--platform {','.join(options.platforms)} would replace published indexes with fewer platforms: "
            + "; ".join(dropped),
            fix="push without --platform (it narrows build-images and test-images), or narrow `platforms:` in the "
            "catalog if fewer platforms is what should be published",
        )


def write_lock_only(options: Options) -> Path:
    """Record what the target holds for every up-to-date entry (HEAD/GET only): for a job after parallel pushes.
    With a signing key or --keyless it also records who signed each digest, read back by verifying it."""
    verifier = None
    if options.signing_key or options.keyless:
        from ci_images.run import signatures

        verifier = signatures.lock_verifier(
            options.signing_key, options.keyless, options.env, default_url=DEFAULT_SOURCE_URL
        )
    catalog, ctx, decisions = make_plan(options, lock=True)
    up_to_date = [d for d in decisions if d.action == "skip"]
    results = [replace(report.Result.from_decision(d), action="skipped") for d in up_to_date]
    try:
        if verifier is not None and ctx.target is not None:
            from ci_images.run import signatures

            held = [(r, d.entry.target) for r, d in zip(results, up_to_date, strict=True)]
            results = signatures.with_observed_signatures(
                ctx.target, held, verifier, recursive=options.recursive
            )
    finally:
        ctx.close()
    lock = lock_file(options, catalog)
    lockfile.update_lock(lock, results, catalog_tags=catalog_tags(options, catalog))
    pending = [d.entry.key for d in decisions if d.action != "skip"]
    if pending:
        log.warning(f"not up to date, left as recorded: {', '.join(pending)}")
    log.info(f"lock file: {lock} ({len(results)} of {len(decisions)} entries up to date)")
    return lock


def ci(options: Options) -> object:
    """CI's entry (`nox -s ci-images`): build and smoke-test; --push publishes, --matrix plans, --lock-only records."""
    if options.matrix:
        return matrix(options)
    if options.lock_only:
        return write_lock_only(options)
    if options.push:
        return push_images(options)
    return build_images(options, smoke=True)


def registry_down(options: Options) -> bool:
    """Stop the embedded local registry (its data stays in the cache folder)."""
    from ci_images.loopback.local import stop_local_registry

    chosen = options.registry
    if chosen is None:  # a CI_IMAGES_REGISTRY naming another registry (as `lab-up` exports) is not this one's
        from_env = options.env.get("CI_IMAGES_REGISTRY", "").strip()
        chosen = from_env if local_address(from_env, "CI_IMAGES_REGISTRY") else "local"
    local = local_address(chosen)
    assert local is not None  # the option's converter takes only local[:PORT]
    stopped = stop_local_registry(cache_home(options.env), local[1])
    log.info(f"stopped the local registry on port {local[1]}" if stopped else "no local registry was running")
    return stopped
