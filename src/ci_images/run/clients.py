"""The client images of command probes in a run: where they are pulled from, and with which credentials.

A client image on Docker Hub is pulled as the run's own upstream images are: through the upstream mirror when there is
one (``docker.io/library/redis:7.2`` -> ``MIRROR/library/redis:7.2``), with the upstream credentials
(CI_IMAGES_UPSTREAM_USER / CI_IMAGES_UPSTREAM_PASSWORD), counted against the pull budget, and once per run. A client
image the engine already holds (as the catalog names it, or as mirrored) is not pulled. Any other registry is left to
the engine's own login (docker's config.json): the upstream credentials are Docker Hub's, and go nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci_images.catalog.refs import Repository, apply_mirror, parse_repository
from ci_images.run.context import Context
from ci_images.smoke.declared import ClientImage


@dataclass(frozen=True)
class ClientRef:
    """A client image reference split the way the engine reads it: repository, then ``:tag`` and/or ``@digest``."""

    repository: Repository
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        return (
            f"{self.repository}"
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def split_reference(image: str) -> ClientRef:
    """``[host/]path[:tag][@digest]`` (the catalog checked its shape) with Docker Hub's names made explicit."""
    name, _, digest = image.partition("@")
    head, slash, last = name.rpartition("/")
    path_end, colon, tag = last.partition(":")
    return ClientRef(parse_repository(f"{head}{slash}{path_end}"), tag if colon else None, digest or None)


def mirrored(image: str, mirror: str | None) -> tuple[str, bool]:
    """Where ``image`` is pulled from (the mirror's name for a Docker Hub image) and whether that pull is upstream's
    (Docker Hub or its mirror: upstream credentials, the pull budget)."""
    ref = split_reference(image)
    if not ref.repository.is_docker_hub:
        return image, False
    moved = ClientRef(apply_mirror(ref.repository, mirror), ref.tag, ref.digest)
    return str(moved), True


def client_images(ctx: Context) -> ClientImage:
    """The run's way to make a command probe's client image present: see the module's docstring."""

    def present(image: str, platform: str) -> str:
        engine = ctx.engine
        if engine.has_image(image):
            return image
        ref, upstream = mirrored(image, ctx.upstream_mirror)

        def pull() -> str:
            if ref == image or not engine.has_image(ref):
                auth = None
                if upstream:
                    host = split_reference(ref).repository.api_host
                    auth = ctx.upstream_pool.engine_auth(host)
                    ctx.budget.spend(1, what=f"client image {image}")
                engine.pull(ref, platform=platform, auth=auth)
            return ref

        return ctx.once(("client-image", ref, platform), pull)

    return present


__all__ = ["ClientRef", "client_images", "mirrored", "split_reference"]
