"""verify-images --rebuild: assemble every assembled entry again from its inputs, upload nothing, and compare.

The inputs are the catalog, the Dockerfile and build context as checked out here, and what the lock file pins: the
upstream digest each tag was built from. The assembly is the one push-images runs (``run/assemble.py``), time and
revision included (``run/reproducible.py``), so an untouched image gives the very digest its tags hold. Entries the
lock file records as built by the engine or mirrored are reported, not rebuilt: only an assembly is byte-reproducible.
Where digests differ, the platform manifests are compared too, to say which platform and which part differ.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_images.assemble.dockerfile import NotAssemblable
from ci_images.oci import short_digest
from ci_images.plan.builds import ASSEMBLED
from ci_images.plan.entries import Entry
from ci_images.registry.documents import index_platforms
from ci_images.run.assemble import Assembled, assemble_entry
from ci_images.run.context import Context
from ci_images.run.resolve import entry_recipe

# Per tag: SAME, DIFFERS and NOT_LOCKED are verdicts on a published tag (the last two fail); the others say why a
# tag was not rebuilt.
SAME, DIFFERS, NOT_LOCKED = "same", "differs", "not-locked"
NOT_PUBLISHED, NOT_ASSEMBLED = "not-published", "not-assembled"
FAILING = frozenset({DIFFERS, NOT_LOCKED})


@dataclass(frozen=True)
class RebuildCheck:
    entry: Entry
    ref: str  # the tag, as a reference
    status: str
    published: str | None  # what the tag holds on the target now
    rebuilt: str | None  # what the inputs make (None: not rebuilt)
    built: str | None  # how the lock file says the digest was made
    detail: str

    @property
    def ok(self) -> bool:
        return self.status not in FAILING

    def as_record(self) -> dict[str, Any]:
        return {
            "entry": self.entry.key,
            "ref": self.ref,
            "status": self.status,
            "ok": self.ok,
            "published_digest": self.published,
            "rebuilt_digest": self.rebuilt,
            "built": self.built,
            "detail": self.detail,
        }


def _published(ctx: Context, entry: Entry) -> dict[str, str | None]:
    client = ctx.target_pool.get(entry.target.api_host)
    held: dict[str, str | None] = {}
    for tag in entry.tags:
        info = client.head_manifest(entry.target.path, tag)
        held[tag] = info.digest if info else None
    return held


def _differences(ctx: Context, entry: Entry, published: str, assembled: Assembled) -> str:
    """Which platform manifests differ, and in what (config, layers), between the published index and the rebuilt."""
    client = ctx.target_pool.get(entry.target.api_host)
    got = client.get_manifest(entry.target.path, published)
    theirs = index_platforms(got[1]) if got else None
    if theirs is None:
        return "the published digest is not an index"
    ours = assembled.platforms
    if set(theirs) != set(ours):
        return f"platforms differ: published {', '.join(sorted(theirs))}, rebuilt {', '.join(sorted(ours))}"
    parts = []
    for image in assembled.images:
        if theirs[image.platform] == image.manifest_digest:
            continue
        found = client.get_manifest(entry.target.path, theirs[image.platform])
        document: dict[str, Any] = json.loads(found[1]) if found else {}
        mine = json.loads(image.manifest)
        what = [
            name
            for name, differs in (
                ("config", (document.get("config") or {}).get("digest") != mine["config"]["digest"]),
                (
                    "layers",
                    [d.get("digest") for d in document.get("layers") or []]
                    != [d["digest"] for d in mine["layers"]],
                ),
            )
            if differs
        ] or ["manifest"]
        parts.append(
            f"{image.platform}: {' and '.join(what)} differ (published {short_digest(theirs[image.platform])}, "
            f"rebuilt {short_digest(image.manifest_digest)})"
        )
    return (
        "; ".join(parts)
        or "the index differs (its annotations or order), every platform manifest is the same"
    )


def _entry_checks(
    ctx: Context, entry: Entry, locked: Mapping[str, Any], *, source_url: str, directory: Path
) -> list[RebuildCheck]:
    held = _published(ctx, entry)
    records = {tag: locked.get(entry.target.with_tag(tag)) or {} for tag in entry.tags}
    first = records[entry.tags[0]]
    built = first.get("built")

    def check(tag: str, status: str, rebuilt: str | None, detail: str) -> RebuildCheck:
        record_built = records[tag].get("built", built)
        return RebuildCheck(
            entry, entry.target.with_tag(tag), status, held[tag], rebuilt, record_built, detail
        )

    if not any(held.values()):
        return [check(tag, NOT_PUBLISHED, None, "not on the target") for tag in entry.tags]
    if not first.get("source_digest"):
        return [
            check(tag, NOT_LOCKED, None, "the lock file pins no upstream digest for it") for tag in entry.tags
        ]
    if built != ASSEMBLED:
        how = f"built by {built}" if built else "not recorded as assembled"
        return [check(tag, NOT_ASSEMBLED, None, f"{how}: not rebuilt") for tag in entry.tags]
    source_digest = str(first["source_digest"])
    try:
        assembled = assemble_entry(
            ctx,
            entry,
            source_digest=source_digest,
            recipe=entry_recipe(entry, source_digest),
            source_url=source_url,
            directory=directory,
        )
    except NotAssemblable as exc:
        return [check(tag, DIFFERS, None, f"cannot be assembled any more: {exc}") for tag in entry.tags]
    checks = []
    for tag in entry.tags:
        published = held[tag]
        if published is None:
            checks.append(check(tag, NOT_PUBLISHED, assembled.digest, "not on the target"))
        elif published == assembled.digest:
            checks.append(check(tag, SAME, assembled.digest, "exactly what the inputs make"))
        else:
            checks.append(
                check(tag, DIFFERS, assembled.digest, _differences(ctx, entry, published, assembled))
            )
    return checks


def rebuild_checks(
    ctx: Context, entries: Sequence[Entry], locked: Mapping[str, Any], *, source_url: str
) -> list[RebuildCheck]:
    """Per tag of every entry, whether the digest it holds is exactly what its inputs make (see the docstring)."""
    checks: list[RebuildCheck] = []
    with tempfile.TemporaryDirectory(prefix="ci-images-rebuild-") as tmp:
        for index, entry in enumerate(entries):
            directory = Path(tmp) / str(index)
            checks.extend(_entry_checks(ctx, entry, locked, source_url=source_url, directory=directory))
    return checks
