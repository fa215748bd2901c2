"""Keeping the catalog and the README current: `outdated`, `bump` and `docs`, behind both doors like every command.

``outdated`` reads upstream tag lists (run/outdated.py); ``bump`` adds what it found to the catalog's text with
its comments and layout kept (catalog/edit.py), checks the result like any catalog and prints the diff; ``docs``
writes README's table of every published reference (plan/docs.py). None of them builds, pulls or pushes anything.
"""

from __future__ import annotations

import difflib
import sys
import tempfile
from pathlib import Path
from typing import Any

from ci_images import smoke, wiring
from ci_images.catalog.load import load_catalog
from ci_images.errors import CatalogError, UsageError
from ci_images.log import log
from ci_images.options import Options
from ci_images.plan import docs as readme_docs
from ci_images.run.outdated import Finding, find_newer, selected_images
from ci_images.run.report import atomic_write


def _findings(options: Options) -> tuple[Path, list[Finding]]:
    catalog = wiring.load(options)
    specs = selected_images(catalog, options.images)
    mirror, _ = wiring.upstream_mirror(options, catalog)
    pool = wiring.upstream_pool(options, catalog)
    try:
        return catalog.path, find_newer(pool, specs, mirror)
    finally:
        pool.close()


def outdated(options: Options) -> list[dict[str, Any]]:
    """Per image, the upstream tags newer than its newest cataloged version. Exit 0 whether or not there are any."""
    _, findings = _findings(options)
    records = [finding.as_record() for finding in findings]
    if not wiring.emit_json(options, records):  # one JSON writer for every command
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
            load_catalog(candidate.name, smoke_kinds=smoke.KINDS)
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
        wiring.emit_json(options, records)
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
    if not wiring.emit_json(options, records):
        sys.stdout.writelines(diff)
    for image, versions in additions.items():
        log.info(f"{path}: {image}: added {', '.join(versions)}")
    return records


def docs(options: Options) -> Path:
    """Rewrite README's reference table from the catalog; with --check only say whether it is current."""
    catalog = wiring.load(options)
    prefix = wiring.target(options, catalog, start_local=False).prefix
    readme = Path(options.readme) if options.readme else catalog.root / "README.md"
    try:
        before = readme.read_text(encoding="utf-8")
        after = readme_docs.splice(before, readme_docs.references_table(catalog, prefix))
    except OSError as exc:
        raise UsageError(f"cannot read {readme}: {exc}", fix="pass --readme PATH") from exc
    except ValueError as exc:
        raise UsageError(
            f"{readme}: {exc}",
            fix=f"put the two marker lines where the table belongs: {readme_docs.BEGIN} and {readme_docs.END}",
        ) from exc
    if after == before:
        log.info(f"{readme}: the reference table is current")
    elif options.check:
        raise UsageError(
            f"{readme}: the reference table is not what {catalog.path} gives",
            fix="run `invoke docs` and commit the README",
        )
    else:
        atomic_write(readme, after)
        log.info(f"{readme}: reference table written from {catalog.path}")
    return readme
