"""The image commands: list-images, plan, build-images, test-images, push-images, ci (with --matrix, --lock-only
and --check-public), check-public and registry-down. Each resolves its Setup once and goes plan -> pipeline -> report.

Output for people goes to the log (standard error), output for machines to standard output or --json. A command
returns normally or raises a CiImagesError; the doors turn that into its exit code.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images.cache import cache_home, machine_lock
from ci_images.commands.options import Options
from ci_images.commands.outcome import emit_json, finish, raise_unresolved
from ci_images.commands.setup import DEFAULT_SOURCE_URL, Setup, prepare
from ci_images.commands.values import local_address
from ci_images.errors import UsageError
from ci_images.log import log
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.matrix import job_matrix
from ci_images.report import lockfile
from ci_images.run.context import Context
from ci_images.run.execute import execute
from ci_images.run.publish import DryRunPublisher, Publisher, RegistryPublisher
from ci_images.run.resolve import resolve
from ci_images.run.result import CHANGING_ACTIONS, HELD_ACTIONS, Result

if TYPE_CHECKING:
    from ci_images.sign.attest import AttestOutcome
    from ci_images.sign.signer import SignOutcome

# The plan's actions that write to the target: a publishing run checks it may write there before it builds.
WRITING_ACTIONS = frozenset({"build", "mirror", "retag"})

# ---- list and plan ---------------------------------------------------------------------------------------------


def list_images(options: Options) -> list[dict[str, Any]]:
    with prepare(
        options, target_required=False
    ) as setup:  # listing needs a prefix for the tags; nothing starts
        rows = [e.as_row() for e in setup.entries]
    if not emit_json(options, rows):
        width = max((len(row["image"]) for row in rows), default=0)
        for row in rows:
            tags = ", ".join(row["tags"])
            platforms = ",".join(row["platforms"])
            sys.stdout.write(
                f"{row['image']:<{width}} {row['variant']:<8} {row['version']:<10} {row['builds']:<9} "
                f"{row['source']}  ->  {tags}  [{platforms}]\n"
            )
    return rows


def make_plan(setup: Setup) -> tuple[Context, list[Decision]]:
    """Resolve upstream and target state (HEAD requests; nothing is built or pushed)."""
    ctx = setup.context()

    def before_target() -> None:
        # Started at the first read of the target, after an upstream answered (once, whichever of resolve's
        # threads gets there first): a run that cannot reach upstream stops without leaving a registry behind.
        ctx.once(("start the destination",), setup.start_destination)

    decisions = resolve(
        ctx, setup.entries, check_target=True, force=setup.options.force, before_target=before_target
    )
    return ctx, decisions


def show_plan(options: Options) -> list[Decision]:
    with prepare(options, preflight=True) as setup:
        setup.check_target()
        ctx, decisions = make_plan(setup)
        if not emit_json(options, [d.as_record() for d in decisions]):
            for d in decisions:
                how = d.entry.how_built  # assembled, engine (and why: the Dockerfile's line) or mirror
                why = f" [engine: {how.reason}]" if how.way == "engine" else ""
                sys.stdout.write(f"{d.entry.key:<32} {d.action:<7} {how.way:<9} {d.reason}{why}\n")
            if ctx.budget.remaining is not None:
                sys.stdout.write(f"upstream pull quota: {ctx.budget.remaining} of {ctx.budget.limit} left\n")
    raise_unresolved(decisions)
    return decisions


def matrix(options: Options) -> dict[str, list[dict[str, object]]]:
    """The plan as a GitHub Actions matrix: one job per image that has work to do."""
    with prepare(options, preflight=True) as setup:
        setup.check_target()
        _, decisions = make_plan(setup)
    result = job_matrix(decisions)
    sys.stdout.write(json.dumps(result) + "\n")
    log.set_output("matrix", json.dumps(result))
    return result


# ---- build and test on this host ------------------------------------------------------------------------------


def build_images(options: Options, *, smoke: bool = False) -> list[Result]:
    """Build every entry (the host's platform tagged with the target tags), smoke-testing with ``smoke``."""
    with prepare(options, target_required=False, preflight=True) as setup:
        ctx = setup.context()
        decisions = resolve(ctx, setup.entries, check_target=False)
        results = execute(ctx, decisions, setup.run_settings(publish=False, smoke=smoke), None)
    finish(results, ctx, options, title="ci-images: build")
    return results


def test_images(options: Options) -> list[Result]:
    """Smoke-test what build-images left in the engine."""
    with prepare(options, target_required=False) as setup:
        ctx = setup.context()
        decisions = [
            Decision(e, "test", "smoke test of the local build", None, None, TargetState(None))
            for e in setup.entries
        ]
        results = execute(ctx, decisions, setup.run_settings(publish=False), None)
    finish(results, ctx, options, title="ci-images: smoke tests")
    return results


# ---- publish ----------------------------------------------------------------------------------------------------


def push_images(options: Options) -> list[Result]:
    # The signer first: a wrong COSIGN_PASSWORD stops the run (exit 2) before any request.
    with prepare(options, preflight=True, check_lock=not options.dry_run, with_signer=True) as setup:
        if options.dry_run:
            return _push_images(setup)
        with _one_publisher_at_a_time(setup):
            return _push_images(setup)


def _one_publisher_at_a_time(setup: Setup) -> contextlib.AbstractContextManager[None]:
    """Runs that publish to one target on this machine take turns, from plan to lock file: the second one plans
    after the first has finished, so it sees what the first published (and skips it), and the lock file ends
    the same as the registry. Across machines the publishing workflow's concurrency group plays this part."""
    prefix = setup.destination.prefix
    return machine_lock(
        f"publish:{prefix}",
        on_wait=lambda: log.info(
            f"another ci-images run is publishing to {prefix}: waiting for it to finish"
        ),
    )


def _push_images(setup: Setup) -> list[Result]:
    options = setup.options
    setup.check_target()
    ctx, decisions = make_plan(setup)
    refuse_narrowing(setup, decisions)
    if not options.dry_run:  # before any build: may it write where this run will push?
        setup.check_target([d.entry for d in decisions if d.action in WRITING_ACTIONS], push=True)
    publisher: Publisher = (
        DryRunPublisher()
        if options.dry_run
        else RegistryPublisher(
            lambda: ctx.engine, ctx.target_pool, ctx.cancel, upstream=ctx.upstream_pool, budget=ctx.budget
        )
    )
    signer = setup.signer
    if signer is not None and options.dry_run:
        log.info(f"dry run: would sign what the tags point to ({signer.mode}: {signer.signer})")
    results = execute(
        ctx, decisions, setup.run_settings(publish=True), publisher, None if options.dry_run else signer
    )
    if options.dry_run:
        modes = {d.entry.key: d.entry.mode for d in decisions}
        results = [_dry_run_note(r, modes.get(r.key)) for r in results]
    elif any(r.action in HELD_ACTIONS for r in results):
        lockfile.update_lock(setup.lock_path, results, catalog_tags=setup.catalog_tags)
        log.info(f"lock file: {setup.lock_path}")
    else:  # a run that published nothing leaves no (empty) lock file behind
        log.info(f"nothing is published: lock file {setup.lock_path} not written")
    finish(results, ctx, options, title="ci-images: push")
    return results


def _dry_run_note(result: Result, mode: str | None) -> Result:
    """A dry run's result is marked as one; what would have changed the target says that nothing was pushed."""
    if result.action not in CHANGING_ACTIONS:
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


def refuse_narrowing(setup: Setup, decisions: Sequence[Decision]) -> None:
    """--platform narrows what is built and tested. Publishing with it would replace a published index with one of
    fewer platforms than the catalog asks for, silently: refused (exit 2) before anything is built. A new tag may be
    published narrow (a laptop without emulation pushing to a local registry); the catalog's ``platforms:`` narrows
    for good."""
    platforms = setup.options.platforms
    if not platforms:
        return
    # What the catalog asks for per entry, without --platform (empty: all that upstream has).
    asked = {e.key: set(e.platforms) for e in setup.catalog_entries}
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
            f"--platform {','.join(platforms)} would replace published indexes with fewer platforms: "
            + "; ".join(dropped),
            fix="push without --platform (it narrows build-images and test-images), or narrow `platforms:` in the "
            "catalog if fewer platforms is what should be published",
        )


def write_lock_only(options: Options) -> Path:
    """Record what the target holds for every up-to-date entry (HEAD/GET only): for a job after parallel pushes.
    With a signing key or --keyless it also records who signed each digest, and the attestations of each digest of
    its image, read back by verifying them."""
    verifier = None
    if options.signing_key or options.keyless:
        from ci_images.sign.choose import lock_verifier

        verifier = lock_verifier(
            options.signing_key, options.keyless, options.env, default_url=DEFAULT_SOURCE_URL
        )
    with prepare(options, preflight=True, check_lock=True) as setup:
        setup.check_target()
        _, decisions = make_plan(setup)
        up_to_date = [d for d in decisions if d.action == "skip"]
        results = [replace(Result.from_decision(d), action="skipped") for d in up_to_date]
        if verifier is not None:
            from ci_images.sign.attach import attestations_now
            from ci_images.sign.choose import observed_signature

            seen: dict[tuple[str, str], tuple[SignOutcome | None, tuple[AttestOutcome, ...]]] = {}
            for index, (result, decision) in enumerate(zip(results, up_to_date, strict=True)):
                if result.digest is None:
                    continue
                repository = decision.entry.target
                key = (str(repository), result.digest)
                if key not in seen:  # one verification per digest
                    seen[key] = (
                        observed_signature(
                            setup.target_pool,
                            repository,
                            result.digest,
                            verifier,
                            recursive=options.sign_recursive,
                        ),
                        ()
                        if options.no_attest
                        else attestations_now(setup.target_pool, repository, result.digest, verifier),
                    )
                signature, attestations = seen[key]
                results[index] = replace(result, signature=signature, attestations=attestations)
    lockfile.update_lock(setup.lock_path, results, catalog_tags=setup.catalog_tags)
    pending = [d.entry.key for d in decisions if d.action != "skip"]
    if pending:
        log.warning(f"not up to date, left as recorded: {', '.join(pending)}")
    log.info(f"lock file: {setup.lock_path} ({len(results)} of {len(decisions)} entries up to date)")
    return setup.lock_path


def check_public(options: Options) -> list[dict[str, Any]]:
    """Read every published tag of the chosen entries, and the digest the lock file pins it to, as a stranger does:
    a HEAD without credentials. RegistryError (exit 3) naming each repository that refuses, with its fix (GHCR makes
    a package private on its first publish). Reads only; the embedded registry is not started."""
    from ci_images.registry import visibility

    with prepare(options) as setup:
        images, _ = lockfile.read_lock(setup.lock_path)
        references = visibility.published_references(setup.entries, images)
        problems = visibility.anonymous_problems(
            references,
            setup.anonymous_pool.get,
            source_repository=options.env.get("GITHUB_REPOSITORY") or None,
        )
    records = visibility.visibility_records(references, problems)
    if not emit_json(options, records):
        for record in records:
            state = "public" if record["public"] else record["problem"]
            sys.stdout.write(
                f"{state:<10} {record['repository']}  ({len(record['references'])} references)\n"
            )
    if problems:
        raise visibility.refusal(problems)
    return records


def ci(options: Options) -> object:
    """CI's entry (`nox -s ci-images`): build and smoke-test; --push publishes, --matrix plans, --lock-only records,
    --check-public reads what was published as a stranger."""
    if options.matrix:
        return matrix(options)
    if options.lock_only:
        return write_lock_only(options)
    if options.check_public:
        return check_public(options)
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
