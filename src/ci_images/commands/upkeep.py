"""Keeping the catalog and the README current: `outdated`, `bump` and `docs`, behind both doors like every command.

``outdated`` reads each image's upstream tag list (``GET /v2/NAME/tags/list``, every ``Link`` page, from the
upstream mirror when one is set: Docker Hub does not count a tag list as a pull); ``bump`` adds what it found to the
catalog's text with its comments and layout kept (catalog/edit.py), checks the result like any catalog and prints
the diff; ``docs`` writes README's table of every published reference (report/readme.py). None of them builds,
pulls or pushes anything.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ci_images.catalog.load import load_catalog
from ci_images.catalog.model import Catalog, ImageSpec
from ci_images.catalog.refs import Repository, apply_mirror
from ci_images.catalog.updates import Newer, newer_tags
from ci_images.commands.options import Options
from ci_images.commands.outcome import emit_json
from ci_images.commands.setup import prepare
from ci_images.errors import CatalogError, UpstreamUnreachableError, UsageError
from ci_images.log import log
from ci_images.plan.entries import split_patterns
from ci_images.registry.pool import ClientPool
from ci_images.report import readme
from ci_images.report.files import atomic_write
from ci_images.smoke.plugins import known_probes


def _findings(options: Options) -> tuple[Path, list[Finding]]:
    # Their --images globs name images, not entries: the Setup is made for every entry, the images chosen here.
    with prepare(replace(options, images=()), target_required=False) as setup:
        specs = selected_images(setup.catalog, options.images)
        return setup.catalog.path, find_newer(setup.upstream_pool, specs, setup.mirror.host)


def outdated(options: Options) -> list[dict[str, Any]]:
    """Per image, the upstream tags newer than its newest cataloged version. Exit 0 whether or not there are any."""
    _, findings = _findings(options)
    records = [finding.as_record() for finding in findings]
    if not emit_json(options, records):  # one JSON writer for every command
        for record in records:
            newer = ", ".join(record["newer"]) or "nothing newer"
            pre = f" (pre-releases: {', '.join(record['prereleases'])})" if record["prereleases"] else ""
            sys.stdout.write(
                f"{record['image']:<12} {record['read_from']:<40} {record['current']} -> {newer}{pre}\n"
            )
    for finding in findings:
        if finding.found.current is None:
            log.warning(f"{finding.spec.name}: no cataloged version reads as MAJOR.MINOR[.PATCH]; skipped")
    count = sum(len(f.found.newer) for f in findings)
    log.info(f"{count} newer release(s) upstream for {len(findings)} image(s)")
    log.set_output("newer", str(count))
    return records


def _checked(catalog_path: Path, text: str) -> None:
    """Load ``text`` as the catalog would be (same folder, so build folders and the lock file resolve the same)."""
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=catalog_path.parent, prefix=f".{catalog_path.name}.", suffix=".bump"
    ) as candidate:
        candidate.write(text)
        candidate.flush()
        try:
            load_catalog(candidate.name, smoke_kinds=known_probes())
        except CatalogError as exc:
            where = f"line {exc.line}: " if exc.line else ""
            raise UsageError(
                f"{catalog_path} would not be valid with the new versions: {where}{exc.message}",
                fix=f"add them by hand and fix the catalog ({exc.fix}), or exclude them with an updates: filter",
            ) from exc


def bump(options: Options) -> list[dict[str, Any]]:
    """Add the releases `outdated` finds to the catalog's versions, keeping its comments and layout; print the diff."""
    path, findings = _findings(options)
    additions = {f.spec.name: list(f.found.newer) for f in findings if f.found.newer}
    records = [{"image": image, "added": versions} for image, versions in additions.items()]
    if not additions:
        log.info(f"{path}: every image is at its newest upstream release; nothing to add")
        emit_json(options, records)
        return records
    from ci_images.catalog.edit import add_versions  # ruamel.yaml: loaded only when a catalog is edited

    before = path.read_text(encoding="utf-8")
    try:
        after = add_versions(before, additions)
    except ValueError as exc:
        raise UsageError(f"{path}: cannot add versions: {exc}", fix="add them by hand") from exc
    _checked(path, after)
    atomic_write(path, after)
    diff = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    if not emit_json(options, records):
        sys.stdout.writelines(diff)
    for image, versions in additions.items():
        log.info(f"{path}: {image}: added {', '.join(versions)}")
    return records


def docs(options: Options) -> Path:
    """Rewrite README's reference table from the catalog; with --check only say whether it is current."""
    with prepare(options) as setup:
        catalog = setup.catalog
        table = readme.references_table(catalog, setup.catalog_entries)
    path = Path(options.readme) if options.readme else catalog.root / "README.md"
    try:
        before = path.read_text(encoding="utf-8")
        after = readme.splice(before, table)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}", fix="pass --readme PATH") from exc
    except ValueError as exc:
        raise UsageError(
            f"{path}: {exc}",
            fix=f"put the two marker lines where the table belongs: {readme.BEGIN} and {readme.END}",
        ) from exc
    if after == before:
        log.info(f"{path}: the reference table is current")
    elif options.check:
        raise UsageError(
            f"{path}: the reference table is not what {catalog.path} gives",
            fix="run `invoke docs` and commit the README",
        )
    else:
        atomic_write(path, after)
        log.info(f"{path}: reference table written from {catalog.path}")
    return path


# ---- what upstream holds beyond the catalog ------------------------------------------------------------------


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
