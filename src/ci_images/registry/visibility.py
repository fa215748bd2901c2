"""After publishing: can a stranger read what was published? One HEAD per reference, without credentials.

GHCR makes a package private on its first publish, whatever the repository's visibility, and links it to a
repository only through the ``org.opencontainers.image.source`` label (or annotation) or by hand. The publishing job
reads and writes with its token, so nothing in it notices; consumers (SOPS' tests pulling anonymously, a `cosign
verify` without login, the pull request plan) meet 401/403. This check reads every published reference the way they
do and names the fix per package. A HEAD is no pull on any registry.

The registry's answer to an anonymous read of a private package is 401 at the token endpoint or 401/403 at the
manifest (GHCR says "denied" for a package that does not exist, too); a registry with htpasswd auth (Debian's
docker-registry) answers 401 with a Basic challenge, which is what the integration test uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError
from ci_images.registry.client import RegistryClient

if TYPE_CHECKING:
    from ci_images.plan.entries import Entry

GHCR = "ghcr.io"
PRIVATE, MISSING = "private", "missing"
# The client's refusals read "<request>: 401 <registry's message>" (a manifest or a token request): a status after
# ": ", never hex digits inside a digest.
_REFUSED = re.compile(r": (401|403)(?!\d)")


@dataclass(frozen=True)
class VisibilityProblem:
    """One repository (GHCR: one package) whose published references a stranger cannot read."""

    repository: Repository
    kind: str  # PRIVATE: refused without credentials (401/403); MISSING: not found (404)
    references: tuple[str, ...]  # the references that failed, host/path:tag
    detail: str  # the registry's answer to the first of them
    fix: str

    @property
    def message(self) -> str:
        what = "refuses anonymous reads" if self.kind == PRIVATE else "is not found without credentials"
        return f"{self.repository} {what} ({', '.join(self.references)}): {self.detail}"

    def render(self) -> str:
        return f"{self.message}; fix: {self.fix}"

    def as_record(self) -> dict[str, Any]:
        return {
            "repository": str(self.repository),
            "problem": self.kind,
            "failed": list(self.references),
            "detail": self.detail,
            "fix": self.fix,
        }


def ghcr_package(repository: Repository) -> tuple[str, str]:
    """(owner, package name) of a GHCR repository: ghcr.io/OWNER/a/b is the package ``a/b`` of OWNER."""
    owner, _, name = repository.path.partition("/")
    return owner, name or owner


def fix_for(repository: Repository, kind: str, *, source_repository: str | None = None) -> str:
    """What to change so strangers can read ``repository``: on GHCR the package's visibility, its link to the
    repository, and the organisation's setting that may forbid public packages."""
    if repository.host != GHCR:
        if kind == MISSING:
            return f"check that the push reached {repository} (the registry does not show it without credentials)"
        return f"allow anonymous pulls of {repository} on {repository.host}, or tell its consumers to log in"
    owner, name = ghcr_package(repository)
    settings = f"https://github.com/orgs/{owner}/packages/container/{quote(name, safe='')}/settings"
    link = (
        f"link it to {source_repository} " if source_repository else "link it to the publishing repository "
    ) + "(package settings: 'Manage Actions access' / 'Connect repository'; a byte-exact mirror carries no "
    link += "org.opencontainers.image.source label, so only this links it)"
    return (
        f"make the package public: {settings} (for a user account /users/{owner}/ instead of /orgs/{owner}/) -> "
        f"Danger Zone -> Change visibility -> Public; {link}; if Public cannot be chosen, the organisation allows "
        f"only private packages: an owner enables public packages in https://github.com/organizations/{owner}/"
        "settings/packages ('Package creation'). Never delete the whole package to start over: a new one is "
        "private again"
    )


def anonymous_problems(
    references: Iterable[tuple[Repository, str]],
    anonymous_client: Callable[[str], RegistryClient],
    *,
    source_repository: str | None = None,
) -> list[VisibilityProblem]:
    """HEAD every ``(repository, tag or digest)`` with the client ``anonymous_client(api_host)`` gives (one that
    holds no credentials; the caller closes it: a ClientPool's ``get``), and return one problem per repository that
    a stranger cannot read, in the order first met. A registry that gives no answer about visibility (unreachable,
    5xx, 429) stops the check with its own RegistryError. ``source_repository`` (OWNER/NAME) names the repository the
    packages should be linked to in the fix."""
    failures: dict[Repository, list[tuple[str, str, str]]] = {}  # repository -> [(reference, kind, detail)]
    for repository, ref in references:
        client = anonymous_client(repository.api_host)
        if client.credentials is not None:
            raise ValueError(f"anonymous_client({repository.api_host!r}) made a client with credentials")
        try:
            found = client.head_manifest(repository.path, ref)
        except RegistryError as exc:
            if not _REFUSED.search(exc.message):
                raise  # unreachable, 5xx, rate limited: no answer about visibility, so no check (exit 3 or 4)
            failures.setdefault(repository, []).append((shown(repository, ref), PRIVATE, exc.message))
            continue
        if found is None:
            failures.setdefault(repository, []).append(
                (shown(repository, ref), MISSING, "404 manifest unknown")
            )
    problems = []
    for repository, failed in failures.items():
        kinds = [kind for _, kind, _ in failed]
        kind = PRIVATE if PRIVATE in kinds else kinds[0]
        detail = next(d for _, k, d in failed if k == kind)
        problems.append(
            VisibilityProblem(
                repository,
                kind,
                tuple(reference for reference, _, _ in failed),
                detail,
                fix_for(repository, kind, source_repository=source_repository),
            )
        )
    return problems


def check_public(
    references: Iterable[tuple[Repository, str]],
    anonymous_client: Callable[[str], RegistryClient],
    *,
    source_repository: str | None = None,
) -> None:
    """RegistryError (exit 3) naming every repository a stranger cannot read, each with its fix; None when all
    references answer an anonymous HEAD."""
    problems = anonymous_problems(references, anonymous_client, source_repository=source_repository)
    if problems:
        raise refusal(problems)


def refusal(problems: Iterable[VisibilityProblem]) -> RegistryError:
    """The error (exit 3) that names every repository a stranger cannot read, one line each with its fix."""
    lines = [p.render() for p in problems]
    return RegistryError(
        f"{len(lines)} published repositor{'y is' if len(lines) == 1 else 'ies are'} not readable "
        "without credentials:\n  " + "\n  ".join(lines),
        fix="change each package's settings as its line says, then run the check again (it only reads)",
    )


def shown(repository: Repository, ref: str) -> str:
    """``host/path:tag`` or ``host/path@sha256:...``."""
    return repository.with_digest(ref) if ref.startswith("sha256:") else repository.with_tag(ref)


def published_references(
    entries: Iterable[Entry], lock_images: Mapping[str, Any]
) -> list[tuple[Repository, str]]:
    """What a stranger may ask for of ``entries``: every tag, and the digest the lock file pins each to (consumers
    pull ``image@sha256:...`` from it), each once, in the entries' order."""
    references: dict[tuple[Repository, str], None] = {}
    for entry in entries:
        for tag in entry.tags:
            references[(entry.target, tag)] = None
        for tag in entry.tags:
            record = lock_images.get(entry.target.with_tag(tag))
            digest = record.get("digest") if isinstance(record, Mapping) else None
            if isinstance(digest, str) and digest.startswith("sha256:"):
                references[(entry.target, digest)] = None
    return list(references)


def visibility_records(
    references: Iterable[tuple[Repository, str]], problems: Iterable[VisibilityProblem]
) -> list[dict[str, Any]]:
    """One record per repository checked (``--json``): what was read, and whether a stranger can read all of it;
    a repository with a problem also carries the problem's fields (``problem``, ``failed``, ``detail``, ``fix``)."""
    checked: dict[Repository, list[str]] = {}
    for repository, ref in references:
        checked.setdefault(repository, []).append(shown(repository, ref))
    found = {p.repository: p for p in problems}
    records = []
    for repository, refs in checked.items():
        record: dict[str, Any] = {"repository": str(repository), "references": refs, "public": True}
        problem = found.get(repository)
        if problem is not None:
            record.update(problem.as_record(), public=False)
        records.append(record)
    return records
