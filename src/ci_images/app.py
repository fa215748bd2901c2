"""The functions behind every front door: invoke tasks, nox sessions and ``python -m ci_images`` call these.

Each takes plain arguments, does the work through catalog -> plan -> adapters -> pipeline -> report, and returns an
exit code or raises a CiImagesError (which the doors turn into that error's exit code).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ci_images import smoke
from ci_images.cache import cache_home
from ci_images.catalog.load import catalog_path, load_catalog
from ci_images.catalog.model import Catalog
from ci_images.catalog.refs import is_loopback_host, normalize_mirror, parse_repository
from ci_images.errors import PublishError, RateLimitError, RegistryError, UsageError
from ci_images.log import log
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

LOCAL = "local"
LOCAL_HOST = "127.0.0.1:5000"
REGISTRY_ENV = "CI_IMAGES_REGISTRY"
MIRROR_ENV = "CI_IMAGES_UPSTREAM_MIRROR"
PLAIN_HTTP_ENV = "CI_IMAGES_PLAIN_HTTP"
DEFAULT_LOCAL_PATH = "ci-images"


@dataclass
class Options:
    """What every command shares; fields left None fall back to the environment, then the catalog."""

    catalog: str | None = None
    images: Sequence[str] = ()
    registry: str | None = None
    platforms: Sequence[str] = ()
    force: bool = False
    dry_run: bool = False
    jobs: int = 2
    fail_fast: bool = False
    json_path: str | None = None
    lock_path: str | None = None
    plain_http: bool = False
    ratelimit_min_remaining: int | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)


def _load(options: Options) -> Catalog:
    return load_catalog(catalog_path(options.catalog, options.env), smoke_kinds=smoke.KINDS)


def _mirror(catalog: Catalog, env: Mapping[str, str]) -> str | None:
    value = env.get(MIRROR_ENV)
    if value:
        try:
            return normalize_mirror(value)
        except ValueError as exc:
            raise UsageError(
                f"{MIRROR_ENV}: {exc}", fix=f"set {MIRROR_ENV}=host[:port], e.g. mirror.gcr.io"
            ) from exc
    return catalog.upstream_mirror


def target_prefix(options: Options, catalog: Catalog, *, start_local: bool) -> tuple[str, bool]:
    """The target prefix and whether it is plain HTTP: --registry, else CI_IMAGES_REGISTRY, else the catalog.

    ``local`` is the embedded registry on 127.0.0.1:5000, started on demand, so trying the tool never pushes to a
    real registry by accident.
    """
    value = options.registry or options.env.get(REGISTRY_ENV) or catalog.registry
    if not value:
        raise UsageError(
            "no target registry",
            fix=f"pass --registry (e.g. --registry local), set {REGISTRY_ENV}, or add 'registry:' to {catalog.path}",
        )
    plain = options.plain_http or options.env.get(PLAIN_HTTP_ENV, "").lower() in {"1", "true", "yes"}
    if value == LOCAL:
        if start_local:
            from ci_images.loopback.local import ensure_local_registry

            ensure_local_registry(cache_home())
        path = DEFAULT_LOCAL_PATH
        if catalog.registry and catalog.registry != LOCAL:
            path = parse_repository(catalog.registry).path
        return f"{LOCAL_HOST}/{path}", True
    try:
        repo = parse_repository(value.rstrip("/") + "/probe")
    except ValueError as exc:
        raise UsageError(
            f"bad target registry {value!r}: {exc}", fix="use HOST[:PORT]/PATH, e.g. ghcr.io/OWNER/REPO"
        ) from exc
    if plain and not is_loopback_host(repo.host):
        raise UsageError(
            f"plain HTTP is only allowed for loopback registries, not {repo.host}",
            fix=f"drop --plain-http / {PLAIN_HTTP_ENV}, and trust the registry's CA in /etc/docker/certs.d/{repo.host}/ca.crt",
        )
    return value.rstrip("/"), plain


def entries_for(options: Options, catalog: Catalog, *, registry: str) -> list[Entry]:
    return planning.expand(
        catalog,
        registry=registry,
        mirror=_mirror(catalog, options.env),
        images=list(options.images),
        platforms=list(options.platforms) or None,
    )


def _plain_http_mirror(env: Mapping[str, str]) -> str | None:
    """A mirror written ``http://HOST:PORT`` is spoken to in plain HTTP: allowed for loopback only."""
    value = env.get(MIRROR_ENV, "").strip()
    if not value.startswith("http://"):
        return None
    host = normalize_mirror(value)
    if not is_loopback_host(host):
        raise UsageError(
            f"{MIRROR_ENV}={value}: plain HTTP is only allowed for loopback registries",
            fix=f"use https (trust its CA in /etc/docker/certs.d/{host}/ca.crt) or a loopback mirror",
        )
    return host


def _upstream_pool(env: Mapping[str, str]) -> ClientPool:
    credentials = resolve_upstream_credentials(env)
    plain = _plain_http_mirror(env)
    return ClientPool(
        lambda host: RegistryClient(host, credentials=credentials, role="upstream", plain_http=host == plain)
    )


def _target_pool(env: Mapping[str, str], plain_http: bool) -> ClientPool:
    return ClientPool(
        lambda host: RegistryClient(host, credentials=resolve_credentials(host, env), plain_http=plain_http)
    )


def _engine_factory() -> Engine:
    from ci_images.engine.client import Engine
    from ci_images.engine.dockerd import ensure_engine

    ensure_engine()
    return Engine.connect()


def _context(options: Options, catalog: Catalog, *, target: ClientPool | None) -> Context:
    minimum = options.ratelimit_min_remaining
    return Context(
        upstream=_upstream_pool(options.env),
        target=target,
        engine_factory=_engine_factory,
        env=options.env,
        root=catalog.root,
        budget=RateBudget(catalog.ratelimit_min_remaining if minimum is None else minimum),
    )


def preflight_upstreams(ctx: Context, entries: Sequence[Entry]) -> None:
    """Reach every upstream host once before anything else, so an unreachable Docker Hub stops the run early."""
    from ci_images.errors import UpstreamUnreachableError

    for host in sorted({e.pull.api_host for e in entries}):
        shown = next(e.pull.host for e in entries if e.pull.api_host == host)
        try:
            ctx.upstream.get(host).ping()
        except UpstreamUnreachableError as exc:
            raise UpstreamUnreachableError(
                f"cannot reach the upstream registry {shown}: {exc.message}",
                fix=(
                    f"if Docker Hub is blocked here, set {MIRROR_ENV}=host[:port] to a Docker Hub mirror or pull-through "
                    "cache (offline: `invoke lab-up` starts one and prints the variables to export)"
                ),
            ) from exc


# ---- commands ----------------------------------------------------------------------------------------------------


def list_images(options: Options, *, as_json: bool) -> list[dict[str, object]]:
    catalog = _load(options)
    if not (options.registry or options.env.get(REGISTRY_ENV) or catalog.registry):
        options = replace(options, registry=LOCAL)  # listing needs a prefix to show tags; nothing is started
    registry, _ = target_prefix(options, catalog, start_local=False)
    rows = [e.as_row() for e in entries_for(options, catalog, registry=registry)]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        for row in rows:
            tags = ", ".join(row["tags"])
            platforms = ",".join(row["platforms"])
            sys.stdout.write(
                f"{row['image']:<12} {row['variant']:<8} {row['version']:<10} {row['mode']:<6} {row['source']}  ->  {tags}  [{platforms}]\n"
            )
    return rows


def _settings(options: Options, catalog: Catalog, *, publish: bool, smoke: bool = True) -> RunSettings:
    return RunSettings(
        jobs=max(1, options.jobs),
        fail_fast=options.fail_fast,
        publish=publish,
        smoke=smoke,
        revision=run_settings.repository_revision(catalog.root, options.env),
        created=run_settings.created_timestamp(options.env),
        source_url=run_settings.repository_url(options.env, "https://github.com/getsops/ci-container-images"),
    )


def make_plan(options: Options, *, start_local: bool = True) -> tuple[Catalog, Context, list[Decision]]:
    """Resolve upstream and target state; nothing is built or pushed."""
    catalog = _load(options)
    registry, plain = target_prefix(options, catalog, start_local=start_local)
    entries = entries_for(options, catalog, registry=registry)
    ctx = _context(options, catalog, target=_target_pool(options.env, plain))
    preflight_upstreams(ctx, entries)
    decisions = resolve(ctx, entries, check_target=True, force=options.force)
    return catalog, ctx, decisions


def show_plan(options: Options, *, as_json: bool) -> list[Decision]:
    _, ctx, decisions = make_plan(options)
    if as_json:
        sys.stdout.write(json.dumps([d.as_record() for d in decisions], indent=2) + "\n")
    else:
        for d in decisions:
            sys.stdout.write(f"{d.entry.key:<32} {d.action:<7} {d.reason}\n")
        if ctx.budget.remaining is not None:
            sys.stdout.write(f"upstream pull quota: {ctx.budget.remaining} of {ctx.budget.limit} left\n")
    ctx.upstream.close()
    unresolved = [d for d in decisions if d.action == "error"]
    if unresolved:
        raise RegistryError(
            f"{len(unresolved)} of {len(decisions)} entries could not be planned: "
            + ", ".join(d.entry.key for d in unresolved),
            fix="see each entry's reason above",
        )
    return decisions


def matrix(options: Options) -> dict[str, list[dict[str, object]]]:
    """The plan as a GitHub Actions matrix: one job per image that has work to do."""
    _, ctx, decisions = make_plan(options)
    ctx.upstream.close()
    include: dict[str, dict[str, object]] = {}
    for d in decisions:
        if d.action == "skip":
            continue
        job = include.setdefault(d.entry.image, {"image": d.entry.image, "entries": []})
        job["entries"].append(d.entry.key)  # type: ignore[attr-defined]
    return {"include": list(include.values())}


def _finish(results: Sequence[report.Result], ctx: Context, options: Options, *, title: str) -> int:
    report.print_table(results, log, ratelimit=(ctx.budget.remaining, ctx.budget.limit))
    if options.json_path:
        report.write_json(Path(options.json_path), results)
    if log.github:
        report.publish_github(results, log, title=title, ratelimit_remaining=ctx.budget.remaining)
    failed = [r for r in results if r.action == "failed"]
    if not failed:
        return 0
    if all(r.reason.startswith("upstream pull quota") for r in failed):
        raise RateLimitError(
            f"{len(failed)} of {len(results)} entries not started: upstream pull quota nearly used up",
            fix="run again after the rate-limit window or log in to the upstream for a higher limit",
        )
    raise PublishError(
        f"{len(failed)} of {len(results)} entries failed: {', '.join(r.key for r in failed)}",
        fix="see the errors above; entries that failed kept their previous tags",
    )


def build_images(options: Options, *, smoke: bool = False) -> list[report.Result]:
    catalog = _load(options)
    registry, _ = target_prefix(options, catalog, start_local=False)
    entries = entries_for(options, catalog, registry=registry)
    ctx = _context(options, catalog, target=None)
    preflight_upstreams(ctx, entries)
    decisions = resolve(ctx, entries, check_target=False)
    results = execute(ctx, decisions, _settings(options, catalog, publish=False, smoke=smoke), None)
    _finish(results, ctx, options, title="ci-images: build")
    return results


def test_images(options: Options) -> list[report.Result]:
    catalog = _load(options)
    registry, _ = target_prefix(options, catalog, start_local=False)
    entries = entries_for(options, catalog, registry=registry)
    ctx = _context(options, catalog, target=None)
    decisions = [
        Decision(e, "test", "smoke test of the local build", None, None, TargetState(None)) for e in entries
    ]
    results = execute(ctx, decisions, _settings(options, catalog, publish=False), None)
    _finish(results, ctx, options, title="ci-images: smoke tests")
    return results


def push_images(options: Options) -> list[report.Result]:
    catalog, ctx, decisions = make_plan(options)
    assert ctx.target is not None
    publisher: Publisher = (
        DryRunPublisher() if options.dry_run else RegistryPublisher(lambda: ctx.engine, ctx.target)
    )
    results = execute(ctx, decisions, _settings(options, catalog, publish=True), publisher)
    if not options.dry_run:
        lock = lock_file(options, catalog)
        lockfile.update_lock(lock, results)
        log.info(f"lock file: {lock}")
    try:
        _finish(results, ctx, options, title="ci-images: push")
    finally:
        ctx.upstream.close()
        ctx.target.close()
    return results


def write_lock_only(options: Options) -> Path:
    """Record what the target holds for every up-to-date entry (HEAD/GET only): for a job after parallel pushes."""
    catalog, ctx, decisions = make_plan(options)
    assert ctx.target is not None
    results = [
        replace(report.Result.from_decision(d), action="skipped") for d in decisions if d.action == "skip"
    ]
    lock = lock_file(options, catalog)
    lockfile.update_lock(lock, results)
    ctx.upstream.close()
    ctx.target.close()
    pending = [d.entry.key for d in decisions if d.action != "skip"]
    if pending:
        log.warning(f"not up to date, left as recorded: {', '.join(pending)}")
    log.info(f"lock file: {lock} ({len(results)} of {len(decisions)} entries up to date)")
    return lock


def lock_file(options: Options, catalog: Catalog) -> Path:
    """--lock, else the catalog's lock_file; pushes to the embedded `local` registry keep theirs in the cache folder,
    so trying the tool never rewrites the repository's lock file with 127.0.0.1 references."""
    if options.lock_path:
        return Path(options.lock_path)
    if (options.registry or options.env.get(REGISTRY_ENV)) == LOCAL:
        return cache_home(options.env) / "local-registry" / catalog.lock_file.name
    return catalog.lock_file


def lab_workdir() -> Path:
    return cache_home() / "lab-run"


def lab_standins(options: Options) -> tuple[dict[str, list[str]], list[str]]:
    """What the lab must serve as upstream for this catalog: Docker Hub repository path -> versions, and platforms."""
    catalog = _load(options)
    standins: dict[str, list[str]] = {}
    platforms: list[str] = []
    for spec in catalog.images:
        if spec.source.is_docker_hub:
            standins.setdefault(spec.source.path, [])
            standins[spec.source.path] += [v for v in spec.versions if v not in standins[spec.source.path]]
        platforms += [p for p in spec.platforms if p not in platforms]
    return standins, platforms
