"""README's table of every published reference, made from the catalog's entries (`invoke docs`). Pure: entries in, text
out.

The table sits between two marker comments in README.md; everything outside them is left as it is, so the rest of
the README stays hand-written and a test can tell when the generated part is stale.
"""

from __future__ import annotations

from collections.abc import Sequence

from ci_images.catalog.model import Catalog
from ci_images.plan.entries import Entry

BEGIN = (
    "<!-- BEGIN ci-images references: generated from images.yaml by `invoke docs`; do not edit by hand -->"
)
END = "<!-- END ci-images references -->"


def _cell(values: Sequence[str]) -> str:
    return "<br>".join(f"`{value}`" for value in values)


def _row(entry: Entry) -> str:
    platforms = ", ".join(p.removeprefix("linux/") for p in entry.platforms)
    cells = [
        entry.image,
        entry.version,
        entry.variant,
        _cell(entry.tag_refs),
        platforms,
        f"`{entry.source_ref}`",
    ]
    return "| " + " | ".join(cells) + " |"


def references_table(catalog: Catalog, entries: Sequence[Entry]) -> str:
    """One row per (image, version, variant): every reference it is published under, its platforms and its base."""
    order = {(spec.name, version): i for spec in catalog.images for i, version in enumerate(spec.versions)}
    images = [spec.name for spec in catalog.images]
    # Catalog order, each version's variants together (expand gives each variant's versions together).
    entries = sorted(entries, key=lambda e: (images.index(e.image), order[(e.image, e.version)]))
    lines = [
        "| image | version | variant | references | platforms | built from |",
        "|---|---|---|---|---|---|",
        *(_row(entry) for entry in entries),
    ]
    return "\n".join(lines) + "\n"


def splice(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``; ValueError when the markers are missing."""
    begin, end = readme.find(BEGIN), readme.find(END)
    if begin < 0 or end < begin:
        raise ValueError("no reference table markers (BEGIN and END ci-images references, in that order)")
    return readme[: begin + len(BEGIN)] + "\n" + table + readme[end:]
