"""One Setup per command, resolved once before anything touches the network: from the parsed Options and the catalog
to everything the command runs with (the catalog, the destination, the upstream mirror, the entries and every tag
the catalog has there, the lock file's path, the registry client pools, the signer). The command hands it down;
nothing below the commands loads the catalog or works out the target again.

The policy is here, in the open: which registry is the target (``--registry``, ``CI_IMAGES_REGISTRY``, the
catalog's; ``local[:PORT]`` is the embedded one), plain HTTP only to loopback, where the lock file goes, and the
checks that run before the first request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ci_images.cache import FileMemo, cache_home
from ci_images.catalog.load import catalog_path, load_catalog
from ci_images.catalog.model import Catalog
from ci_images.catalog.refs import normalize_mirror, parse_repository
from ci_images.commands.options import Options
from ci_images.commands.values import local_address, output_path
from ci_images.errors import UsageError
from ci_images.log import log
from ci_images.oci import refuse_plain_http
from ci_images.plan import entries as planning
from ci_images.plan.entries import Entry
from ci_images.registry.access import check_access
from ci_images.registry.client import RegistryClient
from ci_images.registry.credentials import resolve_credentials, resolve_upstream_credentials
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.report import lockfile
from ci_images.run import settings as run_settings
from ci_images.run.context import Context
from ci_images.run.settings import RunSettings
from ci_images.smoke.plugins import known_probes

if TYPE_CHECKING:
    from ci_images.engine.client import Engine
    from ci_images.sign.signer import Signer

DEFAULT_LOCAL_PATH = (
    "ci-images"  # the repository path under the embedded registry when the catalog names none
)
DEFAULT_SOURCE_URL = "https://github.com/getsops/ci-container-images"


@dataclass(frozen=True)
class Destination:
    """Where a command publishes (or would): the prefix images land under, whether it is plain HTTP, and the
    embedded registry's port when it is that one."""

    prefix: str
    plain_http: bool
    local_port: int | None = None

    @property
    def host(self) -> str:
        return parse_repository(f"{self.prefix}/probe").host


@dataclass(frozen=True)
class Mirror:
    """The Docker Hub mirror entries pull from (None: Docker Hub itself), and whether it speaks plain HTTP."""

    host: str | None
    plain_http: bool = False


@dataclass(frozen=True)
class Setup:
    """Everything one command runs with, resolved once. Close it (or use it as a context manager) to close the
    registry connections."""

    options: Options
    catalog: Catalog
    destination: Destination
    mirror: Mirror
    catalog_entries: tuple[Entry, ...]  # every entry of the catalog on the destination
    entries: tuple[Entry, ...]  # those --images and --platform chose
    lock_path: Path
    upstream_pool: ClientPool = field(repr=False)
    target_pool: ClientPool = field(repr=False)
    anonymous_pool: ClientPool = field(repr=False)  # the target as a stranger reads it: no credentials at all
    signer: Signer | None = None
    started_on: str = field(default_factory=run_settings.utc_now)  # when the command started (provenance)

    @property
    def catalog_tags(self) -> frozenset[str]:
        """Every tag the catalog has on the destination, whatever --images chose: what a lock file may hold."""
        return frozenset(ref for entry in self.catalog_entries for ref in entry.tag_refs)

    def start_destination(self) -> None:
        """Start the embedded registry when the destination is one (a running one is reused)."""
        if self.destination.local_port is not None:
            from ci_images.loopback.local import ensure_local_registry

            ensure_local_registry(cache_home(self.options.env), self.destination.local_port)

    def check_target(self, entries: Sequence[Entry] | None = None, *, push: bool = False) -> None:
        """Before the work: one login to the target, then per repository of ``entries`` (default: the chosen ones)
        may the credentials read it, and with ``push`` write it (registry/access.py)? A refusal stops the command
        with one line, exit 3. The embedded registry is this tool's own, without auth: nothing to check."""
        chosen = self.entries if entries is None else entries
        if self.destination.local_port is None and chosen:
            check_access(self.target_pool, [entry.target for entry in chosen], push=push)

    def context(self) -> Context:
        """What a run of the pipeline shares across its threads."""
        minimum = self.options.ratelimit_min_remaining
        return Context(
            upstream_pool=self.upstream_pool,
            target_pool=self.target_pool,
            engine_factory=partial(engine_factory, created=self.created),
            env=self.options.env,
            budget=RateBudget(self.catalog.ratelimit_min_remaining if minimum is None else minimum),
            upstream_mirror=self.mirror.host,
        )

    @cached_property
    def created(self) -> str:
        """The created label of this command's builds: one value for the run (its engine marker names it too)."""
        return run_settings.created_timestamp(self.options.env)

    def run_settings(self, *, publish: bool, smoke: bool = True) -> RunSettings:
        options = self.options
        return RunSettings(
            jobs=options.jobs,
            fail_fast=options.fail_fast,
            publish=publish,
            smoke=smoke,
            keep_images=options.keep_images,
            revision=run_settings.repository_revision(self.catalog.root, options.env),
            created=self.created,
            source_url=run_settings.repository_url(options.env, DEFAULT_SOURCE_URL),
            sign_recursive=options.sign_recursive,
            attest=not options.no_attest,
            catalog_file=self.catalog.path,
            started_on=self.started_on,
        )

    def close(self) -> None:
        self.upstream_pool.close()
        self.target_pool.close()
        self.anonymous_pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def schema_memo(env: Mapping[str, str]) -> FileMemo:
    """Where catalogs that passed the JSON Schema are remembered: the cache folder, ``validated-catalogs/``."""
    return FileMemo(cache_home(env) / "validated-catalogs")


def prepare(
    options: Options,
    *,
    target_required: bool = True,
    preflight: bool = False,
    check_lock: bool = False,
    with_signer: bool = False,
) -> Setup:
    """The Setup of one command. ``target_required``: no target registry is bad input (else the embedded one's
    prefix names the tags, as a build never pushes); ``preflight``: the credentials for upstream and the target are
    read and checked now; ``check_lock``: the lock file must be writable and a lock file when it exists;
    ``with_signer``: the signer the options ask for is made now (a key decrypted, keyless checked), so a wrong
    password stops the command with exit 2 before any request."""
    signer = _signer(options) if with_signer else None
    catalog = load_catalog(
        catalog_path(options.catalog, options.env), smoke_kinds=known_probes(), memo=schema_memo(options.env)
    )
    destination = _destination(options, catalog, target_required=target_required)
    mirror = _mirror(options, catalog)
    every = planning.expand(catalog, registry=destination.prefix, mirror=mirror.host)
    chosen = planning.select(catalog, every, images=options.images, platforms=options.platforms)
    lock = lock_path(options, catalog, destination)
    if preflight:
        resolve_upstream_credentials(options.env)
        resolve_credentials(destination.host, options.env)
    if check_lock:
        output_path(str(lock), "the lock file")
        lockfile.read_lock(lock)
    return Setup(
        options=options,
        catalog=catalog,
        destination=destination,
        mirror=mirror,
        catalog_entries=tuple(every),
        entries=tuple(chosen),
        lock_path=lock,
        upstream_pool=_upstream_pool(options, mirror),
        target_pool=_target_pool(options, destination),
        anonymous_pool=_anonymous_pool(options, destination),
        signer=signer,
    )


def _signer(options: Options) -> Signer | None:
    """The signer the options ask for; the signing modules (cryptography, PyNaCl) load only when one is asked."""
    if not (options.signing_key or options.keyless):
        return None
    from ci_images.sign.choose import configured_signer

    return configured_signer(
        options.signing_key, options.keyless, options.env, default_url=DEFAULT_SOURCE_URL
    )


def _destination(options: Options, catalog: Catalog, *, target_required: bool) -> Destination:
    """--registry (or CI_IMAGES_REGISTRY), else the catalog's registry. ``local[:PORT]`` is the embedded registry,
    started on demand, so trying the tool never pushes to a real registry by accident."""
    value = options.registry or catalog.registry or ("" if target_required else "local")
    if not value:
        raise UsageError(
            "no target registry",
            fix=f"pass --registry (e.g. --registry local), set CI_IMAGES_REGISTRY, or add 'registry:' to {catalog.path}",
        )
    local = local_address(value)
    if local is not None:
        host, port = local
        path = DEFAULT_LOCAL_PATH
        if catalog.registry and local_address(catalog.registry) is None:
            path = parse_repository(catalog.registry).path
        return Destination(f"{host}:{port}/{path}", plain_http=True, local_port=port)
    destination = Destination(value, plain_http=options.plain_http)
    if options.plain_http:
        refuse_plain_http(destination.host, "--plain-http / CI_IMAGES_PLAIN_HTTP")
    return destination


def _mirror(options: Options, catalog: Catalog) -> Mirror:
    """The Docker Hub mirror (--upstream-mirror, CI_IMAGES_UPSTREAM_MIRROR, the catalog's), plain HTTP when written
    http://127.0.0.1:PORT."""
    value = options.upstream_mirror or catalog.upstream_mirror
    if not value:
        return Mirror(None)
    return Mirror(normalize_mirror(value), value.startswith("http://"))


def lock_path(options: Options, catalog: Catalog, destination: Destination) -> Path:
    """--lock, else the catalog's lock_file, which describes the catalog's registry. A run against another target
    keeps its lock file in the cache folder: the embedded `local` registry's beside its data, any other registry
    given by --registry or CI_IMAGES_REGISTRY (the lab's, a fork's) under ``locks/``. So trying the tool never
    rewrites the repository's lock file with another registry's references."""
    if options.lock_path:
        return Path(options.lock_path)
    if destination.local_port is not None:
        from ci_images.loopback.local import local_home

        return local_home(cache_home(options.env), destination.local_port) / catalog.lock_file.name
    if options.registry and catalog.registry and options.registry.rstrip("/") != catalog.registry.rstrip("/"):
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", options.registry.rstrip("/"))
        return cache_home(options.env) / "locks" / folder / catalog.lock_file.name
    return catalog.lock_file


def _upstream_pool(options: Options, mirror: Mirror) -> ClientPool:
    """Clients for upstream (Docker Hub or its mirror); credentials are read when a client is first made."""

    def client(host: str) -> RegistryClient:
        return RegistryClient(
            host,
            credentials=resolve_upstream_credentials(options.env),
            role="upstream",
            plain_http=mirror.plain_http and host == mirror.host,
            read_timeout_s=options.registry_timeout,
        )

    return ClientPool(client)


def _target_pool(options: Options, destination: Destination) -> ClientPool:
    """Clients for the target; credentials are read when a client is first made (docker's login state included)."""

    def client(host: str) -> RegistryClient:
        return RegistryClient(
            host,
            credentials=resolve_credentials(host, options.env),
            plain_http=destination.plain_http,
            read_timeout_s=options.registry_timeout,
        )

    return ClientPool(client)


def _anonymous_pool(options: Options, destination: Destination) -> ClientPool:
    """Clients for the target that never send credentials (not even docker's login): what SOPS' anonymous pulls and
    a consumer's `cosign verify` without login get."""

    def client(host: str) -> RegistryClient:
        return RegistryClient(
            host, plain_http=destination.plain_http, read_timeout_s=options.registry_timeout
        )

    return ClientPool(client)


def engine_factory(created: str | None = None) -> Engine:
    """The engine, connected on a run's first use: what ended runs left there is removed first (and said), and this
    run is marked, so a run after it can tell whether it ended (engine/runs.py); ``created`` is the created label
    of its builds."""
    from ci_images.engine.client import Engine
    from ci_images.engine.dockerd import ensure_engine

    ensure_engine()
    engine = Engine.connect()
    for reaped in engine.begin_run(created=created):
        log.info(f"removed what an ended run left in the engine: {reaped.describe()}")
    return engine
