"""Before a run does its work: may these credentials do what it will do on the target?

One login per host (``GET /v2/``: basic credentials, or a token from the registry's realm), then once per repository:
read it, and for a run that will publish there, write it. On a token registry (Docker Hub, GHCR, distribution's
``auth: token``) the token for ``repository:NAME:pull,push`` says what it grants in its ``access`` claim (or an OAuth2
answer's ``scope``): no write is needed to know. Where the token does not say (an opaque token), and on a registry
with basic auth (which only knows "signed in"), an upload session is opened and cancelled with DELETE: the
registry's own answer, and nothing stored.

The first refusal stops the run with one line (exit 3) naming the repository, the user and what was refused, before
anything is built, instead of a failed login per entry or a refused upload after every build.
"""

from __future__ import annotations

from collections.abc import Iterable

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool


class AccessRefused(RegistryError):
    """The target refuses what the run needs on a repository (reading it, writing it): nothing was done."""


def check_access(pool: ClientPool, repositories: Iterable[Repository], *, push: bool = False) -> None:
    """One login per host, then per repository (once each): may the credentials read it, and with ``push``, write
    it? Raises on the first refusal: a failed login as the registry or its token service said it, a missing grant
    as AccessRefused."""
    by_host: dict[str, list[Repository]] = {}
    for repository in dict.fromkeys(repositories):
        by_host.setdefault(repository.api_host, []).append(repository)
    for host, chosen in by_host.items():
        client = pool.get(host)
        if client.scheme is None:  # not signed in yet (or the registry asks for nothing): sign in once
            client.ping(scope=f"repository:{chosen[0].path}:pull")
        for repository in chosen:
            _check_read(client, repository)
            if push:
                _check_write(client, repository)


def who(client: RegistryClient) -> str:
    credentials = client.credentials
    return f"user {credentials.username!r}" if credentials else "anonymous (no credentials)"


def _check_read(client: RegistryClient, repository: Repository) -> None:
    """A signed-in user's token must grant pull (anonymous reads of a repository that does not exist yet are
    refused by some registries, so only what credentials are granted is judged here)."""
    if client.credentials is None or client.grants(repository.path, "pull") is not False:
        return
    raise AccessRefused(
        f"{who(client)} may not read {repository}: its token service granted no pull on "
        f"repository:{repository.path}",
        fix=_grant_fix(client, repository, "read"),
    )


def _check_write(client: RegistryClient, repository: Repository) -> None:
    granted = client.grants(repository.path, "push")
    if granted is True:
        return
    if granted is False:
        refused = f"its token service granted no push for repository:{repository.path}:pull,push"
    else:
        answer = client.probe_upload(repository.path)
        if answer is None:
            return
        refused = f"the registry refused to open an upload: {answer}"
    raise AccessRefused(
        f"{who(client)} may not push to {repository}: {refused}; nothing was built",
        fix=_grant_fix(client, repository, "write"),
    )


def _grant_fix(client: RegistryClient, repository: Repository, what: str) -> str:
    if client.credentials is None:
        return (
            f"set CI_IMAGES_REGISTRY_USER and CI_IMAGES_REGISTRY_PASSWORD (or `docker login {repository.host}`) "
            f"for an account that may {what} {repository}"
        )
    ghcr = "write:packages and the package's Actions access" if what == "write" else "read:packages"
    return (
        f"give {who(client)} {what} access to {repository} (on GHCR: a token with {ghcr}), or name a target "
        f"it may {what}: --registry / CI_IMAGES_REGISTRY"
    )


__all__ = ["AccessRefused", "check_access"]
