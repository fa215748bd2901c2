"""Wiring: from the parsed Options and the catalog to the pieces a command runs with: the target, the upstream
mirror, the entries, the registry client pools and the engine, the run's context and settings, the checks that run
before anything touches the network, and the report at the end. Every command in app, signing and upkeep uses it."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ci_images import smoke
from ci_images.cache import cache_home
from ci_images.catalog.load import catalog_path, load_catalog
from ci_images.catalog.model import Catalog
from ci_images.catalog.refs import is_loopback_host, normalize_mirror, parse_repository
from ci_images.errors import EntriesFailed, UsageError
from ci_images.log import log
from ci_images.options import Options
from ci_images.plan import entries as planning
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.registry.auth import resolve_credentials, resolve_upstream_credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.run import lockfile, report
from ci_images.run import settings as run_settings
from ci_images.run.context import Context
from ci_images.run.settings import RunSettings
from ci_images.values import local_address, output_path

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


def catalog_tags(options: Options, catalog: Catalog) -> set[str]:
    """Every tag the catalog has on this run's target, whatever --images and --platform chose: what a lock file
    may hold."""
    prefix = target(options, catalog, start_local=False).prefix
    every = entries_for(replace(options, images=(), platforms=()), catalog, prefix=prefix)
    return {ref for entry in every for ref in entry.tag_refs}


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


def target_pool(options: Options, plain_http: bool) -> ClientPool:
    return ClientPool(
        lambda host: RegistryClient(
            host,
            credentials=resolve_credentials(host, options.env),
            plain_http=plain_http,
            read_timeout_s=options.registry_timeout,
        )
    )


def engine_factory() -> Engine:
    from ci_images.engine.client import Engine
    from ci_images.engine.dockerd import ensure_engine

    ensure_engine()
    return Engine.connect()


def context(options: Options, catalog: Catalog, *, target_pool: ClientPool | None) -> Context:
    minimum = options.ratelimit_min_remaining
    return Context(
        upstream=upstream_pool(options, catalog),
        target=target_pool,
        engine_factory=engine_factory,
        env=options.env,
        root=catalog.root,
        budget=RateBudget(catalog.ratelimit_min_remaining if minimum is None else minimum),
    )


def emit_json(options: Options, records: object) -> bool:
    """Write ``records`` as --json asked: True when they went to standard output (instead of the human output)."""
    if not options.json_path:
        return False
    text = json.dumps(records, indent=2) + "\n"
    if options.json_path == "-":
        sys.stdout.write(text)
        return True
    report.atomic_write(Path(options.json_path), text)
    return False


def run_settings_for(options: Options, catalog: Catalog, *, publish: bool, smoke: bool = True) -> RunSettings:
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


def raise_unresolved(decisions: Sequence[Decision]) -> None:
    failed = [d for d in decisions if d.action == "error"]
    if failed:
        codes = {d.error_code for d in failed if d.error_code is not None}
        raise EntriesFailed(
            f"{len(failed)} of {len(decisions)} entries could not be planned: "
            + ", ".join(d.entry.key for d in failed),
            fix="see each entry's reason above",
            exit_code=codes.pop() if len(codes) == 1 else None,
        )


def finish(results: Sequence[report.Result], ctx: Context, options: Options, *, title: str) -> None:
    """Report the run (table, --json, GitHub); raise the interrupt that stopped it, or EntriesFailed with the right
    exit code when entries failed."""
    report.print_table(results, log, ratelimit=(ctx.budget.remaining, ctx.budget.limit))
    emit_json(options, [r.as_record() for r in results])
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


def build_prefix(options: Options, catalog: Catalog) -> str:
    """The prefix of the tags a host build gets in the engine: the target's, or the local registry's when none is set
    (a build never pushes, so it needs no registry)."""
    if not (options.registry or catalog.registry):
        options = replace(options, registry="local")
    return target(options, catalog, start_local=False).prefix


def target_entries(options: Options) -> tuple[Catalog, ClientPool, list[Entry]]:
    catalog = load(options)
    where = target(options, catalog, start_local=True)
    return (
        catalog,
        target_pool(options, where.plain_http),
        entries_for(options, catalog, prefix=where.prefix),
    )


def lock_file(options: Options, catalog: Catalog) -> Path:
    """--lock, else the catalog's lock_file, which describes the catalog's registry. A run against another target
    keeps its lock file in the cache folder: the embedded `local` registry's beside its data, any other registry
    given by --registry or CI_IMAGES_REGISTRY (the lab's, a fork's) under ``locks/``. So trying the tool never
    rewrites the repository's lock file with another registry's references."""
    if options.lock_path:
        return Path(options.lock_path)
    local = local_address(options.registry or catalog.registry or "")
    if local is not None:
        from ci_images.loopback.local import local_home

        return local_home(cache_home(options.env), local[1]) / catalog.lock_file.name
    if options.registry and catalog.registry and options.registry.rstrip("/") != catalog.registry.rstrip("/"):
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", options.registry.rstrip("/"))
        return cache_home(options.env) / "locks" / folder / catalog.lock_file.name
    return catalog.lock_file
