"""Every option of every command, declared once.

Both doors are made from this one table: the invoke tasks (``invoke push-images ...``) and ``python -m ci_images``
(what the nox sessions run). Each option says its name, kind, help, environment variable and commands; a value
arrives as text, is checked and converted here (bad input: UsageError, exit 2), and becomes one field of Options.
An option that was not given takes its environment variable when that is set and not empty; what is still unset
falls back to the catalog, then to the default, in ``commands.setup``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ci_images.commands.values import (
    STDOUT,
    count,
    env_flag,
    folder,
    globs,
    key_ref,
    local_registry,
    mirror,
    output_path,
    platform_list,
    positive_number,
    registry,
    text,
)
from ci_images.errors import UsageError

Kind = Literal["flag", "value", "list", "optional"]  # optional: --json alone, or --json PATH

# The commands, as users type them on both doors.
LIST, PLAN, BUILD, TEST, PUSH, CI, REGISTRY_DOWN = (
    "list-images",
    "plan",
    "build-images",
    "test-images",
    "push-images",
    "ci",
    "registry-down",
)
GENERATE_KEY, SIGN, VERIFY = "generate-key", "sign-images", "verify-images"
CHECK_PUBLIC = "check-public"
OUTDATED, BUMP, DOCS = "outdated", "bump", "docs"
CLEAN_ENGINE = "clean-engine"
_UPKEEP_COMMANDS = frozenset({OUTDATED, BUMP})  # read upstream tag lists
_CATALOG_COMMANDS = frozenset({LIST, PLAN, BUILD, TEST, PUSH, CI, SIGN, VERIFY, CHECK_PUBLIC})
# Every command that names the target; build-images and test-images tag the host's build under it.
_TARGET_COMMANDS = frozenset({LIST, PLAN, BUILD, TEST, PUSH, CI, SIGN, VERIFY, CHECK_PUBLIC})
_SIGNING_COMMANDS = frozenset({SIGN, PUSH, CI})
_RUN_COMMANDS = frozenset({BUILD, TEST, PUSH, CI})
_UPSTREAM_COMMANDS = frozenset({PLAN, BUILD, PUSH, CI, VERIFY})  # verify-images --rebuild reads the bases


@dataclass
class Options:
    """One command's settings after parsing. Unset (None) values fall back to the catalog, then the default."""

    catalog: str | None = None
    images: Sequence[str] = ()
    registry: str | None = None
    plain_http: bool = False
    upstream_mirror: str | None = None
    platforms: Sequence[str] = ()
    force: bool = False
    dry_run: bool = False
    json_path: str | None = None  # "-": standard output
    jobs: int = 2
    fail_fast: bool = False
    lock_path: str | None = None
    ratelimit_min_remaining: int | None = None
    registry_timeout: int | None = None
    keep_images: bool = False
    push: bool = False
    matrix: bool = False
    lock_only: bool = False
    check_public: bool = False  # ci: only read every published reference without credentials
    signing_key: str | None = None  # COSIGN_KEY: a path or env://VAR
    keyless: bool = False
    recursive: bool = (
        True  # sign each platform manifest too: the default (CI_IMAGES_SIGN_RECURSIVE=0 or --index-only)
    )
    index_only: bool = False
    no_attest: bool = False
    key: str | None = None  # verify-images: the public key
    rebuild: bool = False  # verify-images: re-assemble and compare digests instead of checking signatures
    output: str | None = None  # generate-key: the folder
    readme: str | None = None  # docs: the README with the reference table
    check: bool = False  # docs: only check that the README is current
    # clean-engine: hours after which a run this host cannot see counts as ended
    older_than: int | None = None
    debug: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def sign_recursive(self) -> bool:
        """Sign each platform manifest of an index as well as the index (unless --index-only)."""
        return self.recursive and not self.index_only


# ---- the table ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    name: str  # as typed after `--`
    help: str
    commands: frozenset[str]
    kind: Kind = "value"
    metavar: str = "VALUE"
    env: str | None = None
    convert: Callable[[str, str], Any] = text
    field: str | None = None  # the Options field, when it is not the name with '-' as '_'
    default: str = ""  # shown in help only; the value itself is the Options field's default

    @property
    def attr(self) -> str:
        """The keyword the doors pass it as (invoke's and argparse's dest)."""
        return self.name.replace("-", "_")

    @property
    def target(self) -> str:
        return self.field or self.attr

    @property
    def help_text(self) -> str:
        extra = [f"default: {self.default}"] if self.default else []
        if self.env:
            extra.append(f"env {self.env}")
        return self.help + (f" ({'; '.join(extra)})" if extra else "")


OPTIONS: tuple[Option, ...] = (
    Option(
        "catalog",
        "catalog file",
        _CATALOG_COMMANDS | _UPKEEP_COMMANDS | {DOCS},
        metavar="PATH",
        env="CI_IMAGES_CATALOG",
        default="./images.yaml",
    ),
    Option(
        "images",
        "only these entries: globs on image, image/variant, image/variant/version or image:version; "
        "comma-separated or repeated",
        _CATALOG_COMMANDS | _UPKEEP_COMMANDS,
        kind="list",
        metavar="GLOB",
        convert=globs,
    ),
    Option(
        "registry",
        "target prefix HOST[:PORT]/PATH, e.g. ghcr.io/OWNER/REPO; local[:PORT] is an embedded registry on "
        "127.0.0.1 (port 5000 unless given), started on demand",
        _TARGET_COMMANDS,
        metavar="REGISTRY",
        env="CI_IMAGES_REGISTRY",
        convert=registry,
        default="the catalog's registry",
    ),
    Option(  # registry-down: only the embedded registry; CI_IMAGES_REGISTRY counts when it names one
        "registry",
        "the embedded registry to stop: local or local:PORT (default: CI_IMAGES_REGISTRY when it is local[:PORT], "
        "else local)",
        frozenset({REGISTRY_DOWN}),
        metavar="local[:PORT]",
        convert=local_registry,
    ),
    Option(
        "plain-http",
        "talk plain HTTP to a loopback target registry",
        _TARGET_COMMANDS,
        kind="flag",
        env="CI_IMAGES_PLAIN_HTTP",
    ),
    Option(
        "upstream-mirror",
        "host[:port] of a Docker Hub mirror or pull-through cache (http://127.0.0.1:PORT for a plain-HTTP "
        "loopback one)",
        _UPSTREAM_COMMANDS | _UPKEEP_COMMANDS,
        metavar="HOST",
        env="CI_IMAGES_UPSTREAM_MIRROR",
        convert=mirror,
        default="the catalog's upstream_mirror",
    ),
    Option(
        "platform",
        "only this platform, OS/ARCH[/VARIANT]; comma-separated or repeated",
        _RUN_COMMANDS | {PLAN},
        kind="list",
        metavar="PLATFORM",
        convert=platform_list,
        field="platforms",
        default="the catalog's",
    ),
    Option("force", "rebuild and push even when up to date", frozenset({PLAN, PUSH, CI}), kind="flag"),
    Option(
        "dry-run",
        "plan, build and smoke-test, but upload nothing and move no tag",
        frozenset({PUSH, CI}),
        kind="flag",
    ),
    Option(
        "json",
        "JSON records: to standard output, or to PATH when given",
        _CATALOG_COMMANDS | _UPKEEP_COMMANDS | {CLEAN_ENGINE},
        kind="optional",
        metavar="PATH",
        convert=output_path,
        field="json_path",
    ),
    Option(
        "jobs",
        "entries worked on in parallel",
        _RUN_COMMANDS,
        metavar="N",
        convert=positive_number,
        default="2",
    ),
    Option("fail-fast", "start no further entry after the first failure", _RUN_COMMANDS, kind="flag"),
    Option(
        "lock",
        "lock file: push-images writes it, sign-images adds signatures, verify-images checks tags against it, "
        "check-public also reads the digests it pins",
        frozenset({PUSH, CI, SIGN, VERIFY, CHECK_PUBLIC}),
        metavar="PATH",
        convert=output_path,
        field="lock_path",
        default="the catalog's lock_file",
    ),
    Option(
        "ratelimit-min-remaining",
        "start no upstream pull when fewer remain in the pull quota",
        _UPSTREAM_COMMANDS,
        metavar="N",
        convert=count,
        default="the catalog's, else 10",
    ),
    Option(
        "registry-timeout",
        "seconds to wait for a registry's next bytes before the request is retried",
        _UPSTREAM_COMMANDS | _TARGET_COMMANDS | _UPKEEP_COMMANDS,
        metavar="SECONDS",
        env="CI_IMAGES_REGISTRY_TIMEOUT",
        convert=positive_number,
        default="300",
    ),
    Option(
        "keep-images",
        "keep the per-platform images a push built in the engine, or pulled for its smoke tests when assembled, "
        "tagged as build-images tags them (they are removed otherwise)",
        frozenset({PUSH, CI}),
        kind="flag",
    ),
    Option("push", "also push (without it nothing leaves this machine)", frozenset({CI}), kind="flag"),
    Option(
        "matrix",
        "print the plan as a GitHub Actions job matrix (JSON) and do nothing else",
        frozenset({CI}),
        kind="flag",
    ),
    Option(
        "lock-only",
        "only write the lock file from what the target holds; builds nothing",
        frozenset({CI}),
        kind="flag",
    ),
    Option(
        "check-public",
        "only check that a stranger can read every published tag and pinned digest (a HEAD without credentials); "
        "builds nothing",
        frozenset({CI}),
        kind="flag",
    ),
    Option(
        "signing-key",
        "sign every digest pushed with this cosign key: a path or env://VAR (password: COSIGN_PASSWORD, asked on a "
        "terminal when unset)",
        _SIGNING_COMMANDS,
        metavar="KEY",
        env="COSIGN_KEY",
        convert=key_ref,
    ),
    Option(
        "keyless",
        "sign keyless with cosign and GitHub Actions' OIDC identity (needs cosign on PATH and id-token: write)",
        _SIGNING_COMMANDS,
        kind="flag",
        env="CI_IMAGES_SIGN_KEYLESS",
    ),
    Option(
        "recursive",
        "sign each platform manifest of a multi-platform index as well as the index (the default; "
        "CI_IMAGES_SIGN_RECURSIVE=0 or --index-only turns it off)",
        _SIGNING_COMMANDS,
        kind="flag",
        env="CI_IMAGES_SIGN_RECURSIVE",
    ),
    Option(
        "index-only",
        "sign only the digest a tag points to, not each platform manifest of its index (a single-platform pull "
        "by podman or CRI-O under a sigstoreSigned policy then finds no signature)",
        _SIGNING_COMMANDS,
        kind="flag",
        env="CI_IMAGES_SIGN_INDEX_ONLY",
    ),
    Option(
        "no-attest",
        "signatures only: push-images attaches no provenance or SBOM attestations, verify-images checks none",
        frozenset({PUSH, CI, VERIFY}),
        kind="flag",
        env="CI_IMAGES_NO_ATTEST",
    ),
    Option(
        "key",
        "public key to verify with (cosign.pub, or env://VAR); without it, keyless verification with cosign",
        frozenset({VERIFY}),
        metavar="PUB",
        convert=key_ref,
    ),
    Option(
        "rebuild",
        "instead of signatures: assemble every assembled entry again from the catalog, its build folder and the "
        "upstream digest the lock file pins, and check that each tag holds exactly that digest",
        frozenset({VERIFY}),
        kind="flag",
    ),
    Option(
        "output",
        "folder to write cosign.key and cosign.pub into",
        frozenset({GENERATE_KEY}),
        metavar="DIR",
        convert=folder,
        default=".",
    ),
    Option(
        "readme",
        "the README whose reference table (between its markers) docs rewrites",
        frozenset({DOCS}),
        metavar="PATH",
        convert=output_path,
        default="README.md beside the catalog",
    ),
    Option(
        "check",
        "change nothing; exit 2 when the README's reference table is not what the catalog gives (for CI)",
        frozenset({DOCS}),
        kind="flag",
    ),
    Option(
        "older-than",
        "a run this host cannot see (another machine or container sharing the engine) counts as ended after this "
        "many hours; a run on this host has ended when its process has",
        frozenset({CLEAN_ENGINE}),
        metavar="HOURS",
        convert=count,
        default="24",
    ),
    Option(
        "debug",
        "show debug lines and tracebacks",
        _CATALOG_COMMANDS | _UPKEEP_COMMANDS | {REGISTRY_DOWN, GENERATE_KEY, DOCS, CLEAN_ENGINE},
        kind="flag",
    ),
)

# Pairs of options that contradict each other, per command.
CONFLICTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    CI: (
        ("matrix", "push"),
        ("matrix", "lock-only"),
        ("push", "lock-only"),
        ("matrix", "dry-run"),
        ("lock-only", "dry-run"),
        ("lock-only", "force"),
        ("check-public", "push"),
        ("check-public", "matrix"),
        ("check-public", "lock-only"),
        ("check-public", "dry-run"),
        ("check-public", "force"),
        ("signing-key", "keyless"),
        ("recursive", "index-only"),
    ),
    PUSH: (("signing-key", "keyless"), ("recursive", "index-only")),
    SIGN: (("signing-key", "keyless"), ("recursive", "index-only")),
    VERIFY: (("rebuild", "key"),),
}


def _given(option: Option, value: object) -> bool:
    return value not in (None, False, [], ())


S = TypeVar("S")


def parse(
    command: str,
    given: Mapping[str, object],
    env: Mapping[str, str] | None,
    *,
    table: Sequence[Option],
    settings: Callable[..., S],
) -> S:
    """The settings of ``command`` (what ``settings`` builds) from what a door parsed, keyed by Option.attr, and the
    environment; ``table`` is the option table the command's door was made from."""
    env = os.environ if env is None else env
    known = {option.attr: option for option in table if command in option.commands}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(
            f"{command} takes no option --{unknown[0].replace('_', '-')}", fix=f"see --help of {command}"
        )
    values: dict[str, Any] = {}
    present: set[str] = set()
    for option in known.values():
        raw = given.get(option.attr)
        if _given(option, raw):
            present.add(option.name)
            values[option.target] = _convert(option, raw, f"--{option.name}")
        elif option.env and env.get(option.env, "").strip():
            values[option.target] = _from_env(option, env[option.env])
    for first, second in CONFLICTS.get(command, ()):
        if first in present and second in present:
            raise UsageError(
                f"--{first} and --{second} cannot be used together",
                fix=f"run `{command}` once with --{first} and once with --{second}",
            )
    return settings(**values, env=env)


def parse_options(command: str, given: Mapping[str, object], env: Mapping[str, str] | None = None) -> Options:
    """The Options of one of the tool's own commands (``parse`` over OPTIONS)."""
    return parse(command, given, env, table=OPTIONS, settings=Options)


def _convert(option: Option, raw: object, where: str) -> Any:
    if option.kind == "flag":
        return bool(raw)
    if option.kind == "optional" and raw is True:
        return STDOUT
    if option.kind == "list":
        items = [raw] if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
        return tuple(value for item in items for value in option.convert(str(item), where))
    return option.convert(str(raw), where)


def _from_env(option: Option, raw: str) -> Any:
    if option.kind == "flag":
        return env_flag(raw, option.env or option.name)
    return _convert(option, raw, option.env or option.name)
