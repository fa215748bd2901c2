"""`invoke outdated`: per catalog image, the upstream tags newer than its newest cataloged version.

Read from each upstream's tag list (``GET /v2/NAME/tags/list``, every ``Link`` page) through the one registry
client, from the upstream mirror when one is set. Docker Hub does not count a tag list as a pull, so this costs no
pull quota; nothing else is asked of the registry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ci_images.catalog.model import Catalog, ImageSpec
from ci_images.catalog.refs import Repository, apply_mirror
from ci_images.catalog.updates import Newer, newer_tags
from ci_images.errors import UpstreamUnreachableError, UsageError
from ci_images.plan.entries import split_patterns
from ci_images.registry.pool import ClientPool


@dataclass(frozen=True)
class Finding:
    """One image: where its tags were read, the newest cataloged version, and what upstream holds beyond it."""

    spec: ImageSpec
    read_from: Repository
    found: Newer
    upstream_tags: int

    def as_record(self) -> dict[str, Any]:
        return {
            "image": self.spec.name,
            "source": str(self.spec.source),
            "read_from": str(self.read_from),
            "current": self.found.current,
            "newer": list(self.found.newer),
            "prereleases": list(self.found.prereleases),
            "filter": self.spec.updates.as_record(),
        }


def selected_images(catalog: Catalog, images: Sequence[str]) -> list[ImageSpec]:
    """The images ``--images`` names (globs on the image name; ``image/...`` and ``image:...`` name the image)."""
    patterns = [p.split("/", 1)[0].split(":", 1)[0] for p in split_patterns(images)]
    chosen = [
        s for s in catalog.images if not patterns or any(fnmatch.fnmatchcase(s.name, p) for p in patterns)
    ]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(s.name, p) for s in catalog.images)]
    if unmatched:
        raise UsageError(
            f"--images {', '.join(unmatched)} matches no image in {catalog.path}",
            fix=f"use an image name or glob (images: {', '.join(s.name for s in catalog.images)})",
        )
    return chosen


def find_newer(pool: ClientPool, specs: Sequence[ImageSpec], mirror: str | None) -> list[Finding]:
    """Each image's newer upstream tags, read from its source (or the mirror standing in for Docker Hub)."""
    findings = []
    for spec in specs:
        where = apply_mirror(spec.source, mirror)
        try:
            tags = pool.get(where.api_host).list_tags(where.path)
        except UpstreamUnreachableError as exc:
            raise UpstreamUnreachableError(
                f"cannot read the tags of {where}: {exc.message}",
                fix=(
                    "if Docker Hub is blocked here, pass --upstream-mirror / set CI_IMAGES_UPSTREAM_MIRROR to a "
                    "Docker Hub mirror (offline: `invoke lab-up` starts one and prints the variables)"
                ),
            ) from exc
        # Versions kept in another repository (vault 1.10.0 in library/vault) say nothing about this one's tags.
        own = [r.version for r in spec.releases if r.source == spec.source]
        findings.append(Finding(spec, where, newer_tags(own, tags, spec.updates), len(tags)))
    return findings
