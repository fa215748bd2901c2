"""The commands behind both doors: each takes the parsed Options and goes catalog -> plan -> adapters -> run ->
report. Output for people goes to the log (standard error), output for machines to standard output or --json.

A command returns normally or raises a CiImagesError; the doors (``ci_images.cli``) turn that into its exit code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_images import smoke
from ci_images.cache import cache_home
from ci_images.catalog.load import catalog_path, load_catalog
from ci_images.catalog.model import Catalog
from ci_images.catalog.refs import is_loopback_host, normalize_mirror, parse_repository
from ci_images.errors import EntriesFailed, UpstreamUnreachableError, UsageError
from ci_images.log import log
from ci_images.options import Options, local_address
from ci_images.plan import entries as planning
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.entries import Entry
from ci_images.registry.auth import resolve_credentials, resolve_upstream_credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.run import lockfile, report
from ci_images.run import settings as run_settings
from ci_images.run.context import Context
from ci_images.run.execute import execute
from ci_images.run.publish import DryRunPublisher, Publisher, RegistryPublisher
from ci_images.run.resolve import resolve
from ci_images.run.settings import RunSettings

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


def _upstream_pool(options: Options, catalog: Catalog) -> ClientPool:
    credentials = resolve_upstream_credentials(options.env)
    mirror, plain = upstream_mirror(options, catalog)
    return ClientPool(
        lambda host: RegistryClient(
            host, credentials=credentials, role="upstream", plain_http=plain and host == mirror
        )
    )


def _target_pool(options: Options, plain_http: bool) -> ClientPool:
    return ClientPool(
        lambda host: RegistryClient(
            host, credentials=resolve_credentials(host, options.env), plain_http=plain_http
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
        upstream=_upstream_pool(options, catalog),
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
        revision=run_settings.repository_revision(catalog.root, options.env),
        created=run_settings.created_timestamp(options.env),
        source_url=run_settings.repository_url(options.env, DEFAULT_SOURCE_URL),
    )


def make_plan(options: Options, *, start_local: bool = True) -> tuple[Catalog, Context, list[Decision]]:
    """Resolve upstream and target state; nothing is built or pushed."""
    catalog = load(options)
    where = target(options, catalog, start_local=start_local)
    entries = entries_for(options, catalog, prefix=where.prefix)
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
    include: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if d.action == "skip":
            continue
        job = include.setdefault(d.entry.image, {"image": d.entry.image, "entries": []})
        job["entries"].append(d.entry.key)
    result = {"include": list(include.values())}
    sys.stdout.write(json.dumps(result) + "\n")
    log.set_output("matrix", json.dumps(result))
    return result


def finish(results: Sequence[report.Result], ctx: Context, options: Options, *, title: str) -> None:
    """Report the run (table, --json, GitHub) and raise EntriesFailed with the right exit code when entries failed."""
    report.print_table(results, log, ratelimit=(ctx.budget.remaining, ctx.budget.limit))
    _emit_json(options, [r.as_record() for r in results])
    if log.github:
        report.publish_github(results, log, title=title, ratelimit_remaining=ctx.budget.remaining)
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


def push_images(options: Options) -> list[report.Result]:
    catalog, ctx, decisions = make_plan(options)
    try:
        assert ctx.target is not None
        publisher: Publisher = (
            DryRunPublisher()
            if options.dry_run
            else RegistryPublisher(lambda: ctx.engine, ctx.target, upstream=ctx.upstream, budget=ctx.budget)
        )
        results = execute(ctx, decisions, _settings(options, catalog, publish=True), publisher)
        if not options.dry_run:
            lock = lock_file(options, catalog)
            lockfile.update_lock(lock, results)
            log.info(f"lock file: {lock}")
    finally:
        ctx.close()
    finish(results, ctx, options, title="ci-images: push")
    return results


def write_lock_only(options: Options) -> Path:
    """Record what the target holds for every up-to-date entry (HEAD/GET only): for a job after parallel pushes."""
    catalog, ctx, decisions = make_plan(options)
    ctx.close()
    results = [
        replace(report.Result.from_decision(d), action="skipped") for d in decisions if d.action == "skip"
    ]
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
