"""Semantic checks of a catalog, after the JSON Schema: each raises a CatalogError at the value's file:line:column
with the fix. Dockerfiles must pin their base (ARG BASE_IMAGE, FROM ${BASE_IMAGE}), tag templates must render valid
tags, the lock file stays with the catalog, and no two entries may write the same tag."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ci_images.catalog import tags as tag_rules
from ci_images.catalog.model import DEFAULT_VARIANT, ImageSpec
from ci_images.catalog.refs import is_valid_tag
from ci_images.catalog.schema import located_error
from ci_images.catalog.yamlmarks import Marked

_ARG_BASE_RE = re.compile(r"^\s*ARG\s+BASE_IMAGE(?:=\S*)?\s*$", re.IGNORECASE)


# FROM [--platform=...] IMAGE [AS NAME]: flags come before the image.
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE)


def check_templates(marked: Marked, name: str, path: Sequence[str | int], templates: Sequence[str]) -> None:
    for i, template in enumerate(templates):
        try:
            fields = tag_rules.template_fields(template)
        except ValueError as exc:
            raise located_error(
                marked,
                name,
                (*path, i),
                f"bad tag template {template!r}: {exc}",
                "use {version}, {major}, {minor}, {patch}",
            ) from exc
        unknown = fields - tag_rules.FIELDS
        if unknown:
            raise located_error(
                marked,
                name,
                (*path, i),
                f"tag template {template!r} uses unknown field(s) {sorted(unknown)}",
                "allowed fields: {version}, {major}, {minor}, {patch}",
            )
        sample = tag_rules.render(template, "1.2.3")
        if not is_valid_tag(sample):
            raise located_error(
                marked,
                name,
                (*path, i),
                f"tag template {template!r} does not give a valid tag",
                "tags use letters, digits, '.', '_' and '-'",
            )


def check_dockerfile(dockerfile: Path) -> str | None:
    """Why a Dockerfile cannot be built by this tool, or None: it must declare ``ARG BASE_IMAGE`` before its first
    FROM and build FROM that argument, so every build is pinned to the digest the tool resolved."""
    try:
        lines = dockerfile.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        return f"cannot read {dockerfile}: {exc}"
    seen_arg = False
    for number, line in enumerate(lines, start=1):
        if _ARG_BASE_RE.match(line):
            seen_arg = True
            continue
        match = _FROM_RE.match(line)
        if match:
            if not seen_arg:
                return f"{dockerfile}:{number}: FROM comes before 'ARG BASE_IMAGE'"
            if match.group(1) not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
                return f"{dockerfile}:{number}: the first FROM must be FROM ${{BASE_IMAGE}}, not {match.group(1)}"
            return None
    return f"{dockerfile}: no 'ARG BASE_IMAGE' followed by 'FROM ${{BASE_IMAGE}}'"


def lock_file_path(marked: Marked, name: str, root: Path, value: str) -> Path:
    """The lock file lives with the catalog: a relative .json path that stays inside the catalog's folder."""
    path = Path(value)
    inside = (root / path).resolve().is_relative_to(root.resolve())
    if path.is_absolute() or not inside or path.suffix != ".json":
        raise located_error(
            marked,
            name,
            ("lock_file",),
            f"lock_file {value!r} must be a .json file inside the catalog's folder",
            "write a relative path such as images.lock.json; use --lock PATH for a file elsewhere",
        )
    if (root / path).is_dir():
        raise located_error(
            marked,
            name,
            ("lock_file",),
            f"lock_file {value!r} is a directory",
            "name a file, e.g. images.lock.json",
        )
    return root / path


def check_unique_targets(marked: Marked, name: str, images: Sequence[ImageSpec]) -> None:
    """Two entries must never write the same target tag: the second push would silently replace the first. Images
    are told apart by their target path, so two images with one ``target:`` share its tags."""
    owners: dict[tuple[str, str], tuple[str, str, str]] = {}
    for image in images:
        for variant in image.variants:
            for i, version in enumerate(image.versions):
                version_tags = tag_rules.tags_for(image.tag_templates, version, image.versions)
                if not version_tags:
                    # Only alias templates, and this version owns none of them (a pre-release, or not the highest).
                    raise located_error(
                        marked,
                        name,
                        ("images", image.name, "versions", i),
                        f"version {version!r} of {image.name} gets no tag from the templates {list(image.tag_templates)}",
                        "add '{version}' to the tags, or remove this version",
                    )
                for tag in version_tags:
                    full = tag_rules.variant_tag(tag, variant.name, DEFAULT_VARIANT)
                    key = (image.target, full)
                    if key in owners:
                        other = owners[key]
                        raise located_error(
                            marked,
                            name,
                            ("images", image.name, "versions", i),
                            f"target tag {image.target}:{full} is produced twice: by {image.name}/{variant.name}/{version} and by {other[0]}/{other[1]}/{other[2]}",
                            "make every tag template contain {version}, or remove the duplicate version or variant",
                        )
                    owners[key] = (image.name, variant.name, version)
