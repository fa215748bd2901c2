"""The commands behind both doors: each takes the parsed Options and goes catalog -> plan -> adapters -> run ->
report. Output for people goes to the log (standard error), output for machines to standard output or --json.

A command returns normally or raises a CiImagesError; the doors (``ci_images.cli``) turn that into its exit code.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images import smoke
from ci_images.cache import cache_home, machine_lock
from ci_images.catalog.load import catalog_path, load_catalog
from ci_images.catalog.model import Catalog
from ci_images.catalog.refs import is_loopback_host, normalize_mirror, parse_repository
from ci_images.errors import EntriesFailed, SigningError, UpstreamUnreachableError, UsageError
from ci_images.log import log
from ci_images.options import Options, local_address, output_path
from ci_images.plan import entries as planning
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.entries import Entry
from ci_images.plan.matrix import job_matrix
from ci_images.registry.auth import resolve_credentials, resolve_upstream_credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.run import lockfile, report, signatures
from ci_images.run import settings as run_settings
from ci_images.run.context import Context
from ci_images.run.execute import execute
from ci_images.run.publish import DryRunPublisher, Publisher, RegistryPublisher
from ci_images.run.resolve import resolve
from ci_images.run.settings import RunSettings
from ci_images.sign.signer import Signer

if TYPE_CHECKING:
    from ci_images.engine.client import Engine

DEFAULT_LOCAL_PATH = "ci-images"
DEFAULT_SOURCE_URL = "https://github.com/getsops/ci-container-images"


@dataclass(frozen=True)
class Target:
    """Where a run publishes: the prefix images land under, whether it is plain HTTP, and the local registry's port."""

    prefix: str
    plain_http: bool
    local_port: int | None = None


def load(options: Options) -> Catalog:
    return load_catalog(catalog_path(options.catalog, options.env), smoke_kinds=smoke.KINDS)


def target(options: Options, catalog: Catalog, *, start_local: bool) -> Target:
    """--registry (or CI_IMAGES_REGISTRY), else the catalog's registry. ``local[:PORT]`` is the embedded registry,
    started on demand, so trying the tool never pushes to a real registry by accident."""
    value = options.registry or catalog.registry
    if not value:
        raise UsageError(
            "no target registry",
            fix=f"pass --registry (e.g. --registry local), set CI_IMAGES_REGISTRY, or add 'registry:' to {catalog.path}",
        )
    local = local_address(value)
    if local is not None:
        host, port = local
        if start_local:
            from ci_images.loopback.local import ensure_local_registry

            ensure_local_registry(cache_home(options.env), port)
        path = DEFAULT_LOCAL_PATH
        if catalog.registry and local_address(catalog.registry) is None:
            path = parse_repository(catalog.registry).path
        return Target(f"{host}:{port}/{path}", plain_http=True, local_port=port)
    host = parse_repository(f"{value}/probe").host
    if options.plain_http and not is_loopback_host(host):
        raise UsageError(
            f"plain HTTP is only allowed for loopback registries, not {host}",
            fix=f"drop --plain-http / CI_IMAGES_PLAIN_HTTP, and trust the registry's CA in /etc/docker/certs.d/{host}/ca.crt",
        )
    return Target(value, plain_http=options.plain_http)


def upstream_mirror(options: Options, catalog: Catalog) -> tuple[str | None, bool]:
    """The Docker Hub mirror host (--upstream-mirror, CI_IMAGES_UPSTREAM_MIRROR, the catalog's) and whether it is
    plain HTTP (written http://127.0.0.1:PORT)."""
    value = options.upstream_mirror or catalog.upstream_mirror
    if not value:
        return None, False
    return normalize_mirror(value), value.startswith("http://")


def entries_for(options: Options, catalog: Catalog, *, prefix: str) -> list[Entry]:
    mirror, _ = upstream_mirror(options, catalog)
    return planning.expand(
        catalog,
        registry=prefix,
        mirror=mirror,
        images=list(options.images),
        platforms=list(options.platforms) or None,
    )


def upstream_pool(options: Options, catalog: Catalog) -> ClientPool:
    credentials = resolve_upstream_credentials(options.env)
    mirror, plain = upstream_mirror(options, catalog)
    return ClientPool(
        lambda host: RegistryClient(
            host,
            credentials=credentials,
            role="upstream",
            plain_http=plain and host == mirror,
            read_timeout_s=options.registry_timeout,
        )
    )


def _target_pool(options: Options, plain_http: bool) -> ClientPool:
    return ClientPool(
        lambda host: RegistryClient(
            host,
            credentials=resolve_credentials(host, options.env),
            plain_http=plain_http,
            read_timeout_s=options.registry_timeout,
        )
    )


def _engine_factory() -> Engine:
    from ci_images.engine.client import Engine
    from ci_images.engine.dockerd import ensure_engine

    ensure_engine()
    return Engine.connect()


def _context(options: Options, catalog: Catalog, *, target_pool: ClientPool | None) -> Context:
    minimum = options.ratelimit_min_remaining
    return Context(
        upstream=upstream_pool(options, catalog),
        target=target_pool,
        engine_factory=_engine_factory,
        env=options.env,
        root=catalog.root,
        budget=RateBudget(catalog.ratelimit_min_remaining if minimum is None else minimum),
    )


def preflight_upstreams(ctx: Context, entries: Sequence[Entry]) -> None:
    """Reach every upstream host once before anything else, so an unreachable Docker Hub stops the run early."""
    for host in sorted({e.pull.api_host for e in entries}):
        shown = next(e.pull.host for e in entries if e.pull.api_host == host)
        try:
            ctx.upstream.get(host).ping()
        except UpstreamUnreachableError as exc:
            raise UpstreamUnreachableError(
                f"cannot reach the upstream registry {shown}: {exc.message}",
                fix=(
                    "if Docker Hub is blocked here, pass --upstream-mirror / set CI_IMAGES_UPSTREAM_MIRROR to a Docker "
                    "Hub mirror or pull-through cache (offline: `invoke lab-up` starts one and prints the variables)"
                ),
            ) from exc


def _emit_json(options: Options, records: object) -> bool:
    """Write ``records`` as --json asked: True when they went to standard output (instead of the human output)."""
    if not options.json_path:
        return False
    text = json.dumps(records, indent=2) + "\n"
    if options.json_path == "-":
        sys.stdout.write(text)
        return True
    report.atomic_write(Path(options.json_path), text)
    return False


# ---- commands ----------------------------------------------------------------------------------------------------


def list_images(options: Options) -> list[dict[str, Any]]:
    catalog = load(options)
    if not (options.registry or catalog.registry):
        options = replace(
            options, registry="local"
        )  # listing needs a prefix to show tags; nothing is started
    prefix = target(options, catalog, start_local=False).prefix
    rows = [e.as_row() for e in entries_for(options, catalog, prefix=prefix)]
    if not _emit_json(options, rows):
        width = max((len(row["image"]) for row in rows), default=0)
        for row in rows:
            tags = ", ".join(row["tags"])
            platforms = ",".join(row["platforms"])
            sys.stdout.write(
                f"{row['image']:<{width}} {row['variant']:<8} {row['version']:<10} {row['mode']:<6} {row['source']}  ->  {tags}  [{platforms}]\n"
            )
    return rows


def _settings(options: Options, catalog: Catalog, *, publish: bool, smoke: bool = True) -> RunSettings:
    return RunSettings(
        jobs=options.jobs,
        fail_fast=options.fail_fast,
        publish=publish,
        smoke=smoke,
        keep_images=options.keep_images,
        revision=run_settings.repository_revision(catalog.root, options.env),
        created=run_settings.created_timestamp(options.env),
        source_url=run_settings.repository_url(options.env, DEFAULT_SOURCE_URL),
        sign_recursive=options.recursive,
    )


def preflight(options: Options, catalog: Catalog, where: Target, *, lock: Path | None) -> None:
    """Every check that needs neither the engine nor a registry, before either is touched: credential pairs,
    docker's login state for the target, and the lock file (writable, and a lock file when it exists). Options and
    the catalog are checked while they are parsed and loaded; together nothing bad reaches the network."""
    resolve_upstream_credentials(options.env)
    resolve_credentials(parse_repository(f"{where.prefix}/probe").host, options.env)
    if lock is not None:
        output_path(str(lock), "the lock file")
        lockfile.read_lock(lock)


def make_plan(
    options: Options, *, start_local: bool = True, lock: bool = False
) -> tuple[Catalog, Context, list[Decision]]:
    """Resolve upstream and target state; nothing is built or pushed."""
    catalog = load(options)
    where = target(options, catalog, start_local=False)
    entries = entries_for(options, catalog, prefix=where.prefix)
    preflight(options, catalog, where, lock=lock_file(options, catalog) if lock else None)
    if start_local and where.local_port is not None:
        where = target(options, catalog, start_local=True)
    ctx = _context(options, catalog, target_pool=_target_pool(options, where.plain_http))
    preflight_upstreams(ctx, entries)
    decisions = resolve(ctx, entries, check_target=True, force=options.force)
    return catalog, ctx, decisions


def _unresolved(decisions: Sequence[Decision]) -> None:
    failed = [d for d in decisions if d.action == "error"]
    if failed:
        codes = {d.error_code for d in failed if d.error_code is not None}
        raise EntriesFailed(
            f"{len(failed)} of {len(decisions)} entries could not be planned: "
            + ", ".join(d.entry.key for d in failed),
            fix="see each entry's reason above",
            exit_code=codes.pop() if len(codes) == 1 else None,
        )


def show_plan(options: Options) -> list[Decision]:
    _, ctx, decisions = make_plan(options)
    try:
        if not _emit_json(options, [d.as_record() for d in decisions]):
            for d in decisions:
                sys.stdout.write(f"{d.entry.key:<32} {d.action:<7} {d.reason}\n")
            if ctx.budget.remaining is not None:
                sys.stdout.write(f"upstream pull quota: {ctx.budget.remaining} of {ctx.budget.limit} left\n")
    finally:
        ctx.close()
    _unresolved(decisions)
    return decisions


def matrix(options: Options) -> dict[str, list[dict[str, object]]]:
    """The plan as a GitHub Actions matrix: one job per image that has work to do."""
    _, ctx, decisions = make_plan(options)
    ctx.close()
    result = job_matrix(decisions)
    sys.stdout.write(json.dumps(result) + "\n")
    log.set_output("matrix", json.dumps(result))
    return result


def finish(results: Sequence[report.Result], ctx: Context, options: Options, *, title: str) -> None:
    """Report the run (table, --json, GitHub); raise the interrupt that stopped it, or EntriesFailed with the right
    exit code when entries failed."""
    report.print_table(results, log, ratelimit=(ctx.budget.remaining, ctx.budget.limit))
    _emit_json(options, [r.as_record() for r in results])
    if log.github:
        report.publish_github(results, log, title=title, ratelimit_remaining=ctx.budget.remaining)
    if ctx.interrupted is not None:
        raise ctx.interrupted
    failed = [r for r in results if r.action == "failed"]
    if not failed:
        return
    codes = {r.exit_code for r in failed if r.exit_code is not None}
    went_through = len(failed) < len(results)
    raise EntriesFailed(
        f"{len(failed)} of {len(results)} entries failed: {', '.join(r.key for r in failed)}",
        fix="see the errors above; entries that failed kept their previous tags",
        exit_code=codes.pop() if len(codes) == 1 and not went_through else None,
    )


def _build_prefix(options: Options, catalog: Catalog) -> str:
    """The prefix of the tags a host build gets in the engine: the target's, or the local registry's when none is set
    (a build never pushes, so it needs no registry)."""
    if not (options.registry or catalog.registry):
        options = replace(options, registry="local")
    return target(options, catalog, start_local=False).prefix


def build_images(options: Options, *, smoke: bool = False) -> list[report.Result]:
    catalog = load(options)
    entries = entries_for(options, catalog, prefix=_build_prefix(options, catalog))
    resolve_upstream_credentials(options.env)
    ctx = _context(options, catalog, target_pool=None)
    try:
        preflight_upstreams(ctx, entries)
        decisions = resolve(ctx, entries, check_target=False)
        results = execute(ctx, decisions, _settings(options, catalog, publish=False, smoke=smoke), None)
    finally:
        ctx.close()
    finish(results, ctx, options, title="ci-images: build")
    return results


def test_images(options: Options) -> list[report.Result]:
    catalog = load(options)
    entries = entries_for(options, catalog, prefix=_build_prefix(options, catalog))
    ctx = _context(options, catalog, target_pool=None)
    decisions = [
        Decision(e, "test", "smoke test of the local build", None, None, TargetState(None)) for e in entries
    ]
    try:
        results = execute(ctx, decisions, _settings(options, catalog, publish=False), None)
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


def _signer(options: Options) -> Signer | None:
    return signatures.configured_signer(
        options.signing_key, options.keyless, options.env, default_url=DEFAULT_SOURCE_URL
    )


def push_images(options: Options) -> list[report.Result]:
    signer = _signer(options)  # first: a wrong COSIGN_PASSWORD stops the run (exit 2) before anything else
    if options.dry_run:
        return _push_images(options, signer)
    with _one_publisher_at_a_time(options):
        return _push_images(options, signer)


def _push_images(options: Options, signer: Signer | None) -> list[report.Result]:
    catalog, ctx, decisions = make_plan(options, lock=not options.dry_run)
    try:
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
        settings = _settings(options, catalog, publish=True)
        results = execute(ctx, decisions, settings, publisher, None if options.dry_run else signer)
        if not options.dry_run:
            lock = lock_file(options, catalog)
            lockfile.update_lock(lock, results)
            log.info(f"lock file: {lock}")
    finally:
        ctx.close()
    finish(results, ctx, options, title="ci-images: push")
    return results


def write_lock_only(options: Options) -> Path:
    """Record what the target holds for every up-to-date entry (HEAD/GET only): for a job after parallel pushes.
    With a signing key or --keyless it also records who signed each digest, read back by verifying it."""
    verifier = signatures.lock_verifier(
        options.signing_key, options.keyless, options.env, default_url=DEFAULT_SOURCE_URL
    )
    catalog, ctx, decisions = make_plan(options, lock=True)
    up_to_date = [d for d in decisions if d.action == "skip"]
    results = [replace(report.Result.from_decision(d), action="skipped") for d in up_to_date]
    try:
        if verifier is not None and ctx.target is not None:
            held = [(r, d.entry.target) for r, d in zip(results, up_to_date, strict=True)]
            results = signatures.with_observed_signatures(
                ctx.target, held, verifier, recursive=options.recursive
            )
    finally:
        ctx.close()
    lock = lock_file(options, catalog)
    lockfile.update_lock(lock, results)
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


def generate_key(options: Options) -> Path:
    """cosign.key (encrypted with COSIGN_PASSWORD, mode 0600) and cosign.pub; never overwrites a key."""
    from ci_images.sign.keys import generate_key_files

    key, public, fingerprint = generate_key_files(Path(options.output or "."), options.env)
    log.info(f"private key written to {key} (encrypted, mode 0600); public key written to {public}")
    log.info(f"key fingerprint: {fingerprint}")
    log.info(f"sign with: COSIGN_KEY={key} COSIGN_PASSWORD=... invoke push-images")
    return key


def _target_entries(options: Options) -> tuple[Catalog, ClientPool, list[Entry]]:
    catalog = load(options)
    where = target(options, catalog, start_local=True)
    return (
        catalog,
        _target_pool(options, where.plain_http),
        entries_for(options, catalog, prefix=where.prefix),
    )


def sign_images(options: Options) -> list[dict[str, Any]]:
    """Sign the digests the catalog's tags point to on the target now, where this key (or identity) has not."""
    signer = _signer(options)
    if signer is None:
        raise UsageError(
            "nothing to sign with",
            fix="set COSIGN_KEY (a path or env://VAR) and COSIGN_PASSWORD, or pass --keyless in GitHub Actions",
        )
    catalog, pool, entries = _target_entries(options)
    try:
        held = signatures.held_tags(pool, entries)
        done = signatures.sign_held(pool, held, signer, recursive=options.recursive)
    finally:
        pool.close()
    records = signatures.sign_records(done, held, log)
    _emit_json(options, records)
    lockfile.record_signatures(lock_file(options, catalog), [outcome for _, _, outcome in done])
    return records


def verify_images(options: Options) -> list[signatures.TagCheck]:
    """Check every catalog tag on the target: signed by the key (or keyless identity), payload names the digest and
    the repository, and the tag points where the lock file says. Exit 9 names every failure."""
    verifier = signatures.configured_verifier(options.key, options.env, default_url=DEFAULT_SOURCE_URL)
    catalog, pool, entries = _target_entries(options)
    locked, _ = lockfile.read_lock(lock_file(options, catalog))
    try:
        checks = signatures.verify_held(pool, signatures.held_tags(pool, entries), verifier, locked)
    finally:
        pool.close()
    signatures.print_checks(checks, log)
    _emit_json(options, [check.as_record() for check in checks])
    failed = [check for check in checks if not check.ok]
    if failed:
        raise SigningError(
            f"{len(failed)} of {len(checks)} tags failed verification: "
            + "; ".join(f"{check.ref}: {check.message}" for check in failed),
            fix="re-sign what is yours (`invoke sign-images`), or find out who moved or re-signed these tags",
        )
    log.info(f"all {len(checks)} tags verified ({verifier.mode}: {verifier.signer})")
    return checks


def registry_down(options: Options) -> bool:
    """Stop the embedded local registry (its data stays in the cache folder)."""
    from ci_images.loopback.local import stop_local_registry

    local = local_address(options.registry or "local")
    if local is None:
        raise UsageError(
            f"--registry {options.registry}: registry-down stops only the embedded local registry",
            fix="give local or local:PORT",
        )
    stopped = stop_local_registry(cache_home(options.env), local[1])
    log.info(f"stopped the local registry on port {local[1]}" if stopped else "no local registry was running")
    return stopped


def lock_file(options: Options, catalog: Catalog) -> Path:
    """--lock, else the catalog's lock_file; pushes to the embedded `local` registry keep theirs in the cache folder,
    so trying the tool never rewrites the repository's lock file with 127.0.0.1 references."""
    if options.lock_path:
        return Path(options.lock_path)
    local = local_address(options.registry or catalog.registry or "")
    if local is not None:
        from ci_images.loopback.local import local_home

        return local_home(cache_home(options.env), local[1]) / catalog.lock_file.name
    return catalog.lock_file
