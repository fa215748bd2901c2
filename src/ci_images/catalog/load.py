"""The catalog (``images.yaml``): loaded, validated, and frozen into dataclasses.

Validation runs in two passes: the JSON Schema (shape and types) and semantic checks that need the file system or
cross-entry knowledge (build folders, Dockerfiles, tag collisions). Every error carries file:line:column and a fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from ci_images.catalog import tags as tag_rules
from ci_images.catalog import updates as update_rules
from ci_images.catalog.model import Catalog, ImageSpec, Variant
from ci_images.catalog.refs import Repository, is_valid_tag, normalize_mirror, parse_repository
from ci_images.catalog.releases import check_platform, platform_list, releases, target_path
from ci_images.catalog.schema import located_error, validate_schema
from ci_images.catalog.yamlmarks import Marked, decode, load_marked
from ci_images.errors import UsageError

CATALOG_ENV = "CI_IMAGES_CATALOG"
DEFAULT_CATALOG = "images.yaml"
DEFAULT_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64")
DEFAULT_VARIANT = "plain"
_ARG_BASE_RE = re.compile(r"^\s*ARG\s+BASE_IMAGE(?:=\S*)?\s*$", re.IGNORECASE)
# FROM [--platform=...] IMAGE [AS NAME]: flags come before the image.
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE)


def catalog_path(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """--catalog, else CI_IMAGES_CATALOG, else ./images.yaml."""
    env = os.environ if env is None else env
    return Path(explicit or env.get(CATALOG_ENV) or DEFAULT_CATALOG)


def load_catalog(path: str | os.PathLike[str], *, smoke_kinds: Collection[str]) -> Catalog:
    """Load and validate the catalog at ``path``; ``smoke_kinds`` are the probe kinds ``smoke:`` may name (the
    caller passes ``ci_images.smoke.KINDS``: the catalog layer knows no adapter)."""
    file = Path(path)
    name = str(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(
            f"catalog {name} not found",
            fix=f"run from the repository root, or pass --catalog PATH / set {CATALOG_ENV}",
        ) from exc
    except IsADirectoryError as exc:
        raise UsageError(
            f"catalog {name} is a directory", fix="name the catalog file, e.g. images.yaml"
        ) from exc
    except OSError as exc:
        raise UsageError(
            f"cannot read catalog {name}: {exc.strerror or exc}", fix="check the file's permissions"
        ) from exc
    marked = load_marked(decode(data, name), name)
    validate_schema(marked, name)
    return _build(marked, file, name, tuple(smoke_kinds))


def _check_templates(marked: Marked, name: str, path: Sequence[str | int], templates: Sequence[str]) -> None:
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


def _build(marked: Marked, file: Path, name: str, smoke_kinds: tuple[str, ...]) -> Catalog:
    data: dict[str, Any] = marked.data
    root = file.parent
    registry = data.get("registry")
    if registry is not None and registry != "local":
        try:
            parse_repository(f"{registry.rstrip('/')}/probe")
        except ValueError as exc:
            raise located_error(
                marked,
                name,
                ("registry",),
                f"bad registry {registry!r}: {exc}",
                "write HOST[:PORT]/PATH, e.g. ghcr.io/OWNER/REPO, or 'local' for 127.0.0.1:5000",
            ) from exc
    mirror = data.get("upstream_mirror")
    if mirror is not None:
        try:
            mirror = normalize_mirror(mirror)
        except ValueError as exc:
            raise located_error(
                marked,
                name,
                ("upstream_mirror",),
                f"upstream_mirror: {exc}",
                "write host[:port], e.g. mirror.example.com:5000",
            ) from exc
    platforms = tuple(
        check_platform(marked, name, ("platforms", i), p)
        for i, p in enumerate(data.get("platforms", DEFAULT_PLATFORMS))
    )
    default_templates = tuple(data.get("tags", tag_rules.DEFAULT_TEMPLATES))
    if "tags" in data:
        _check_templates(marked, name, ("tags",), default_templates)
    images = tuple(
        _build_image(marked, name, root, image_name, spec, platforms, default_templates, smoke_kinds)
        for image_name, spec in data["images"].items()
    )
    _check_unique_targets(marked, name, images)
    return Catalog(
        path=file,
        registry=registry,
        upstream_mirror=mirror,
        platforms=platforms,
        lock_file=_lock_file(marked, name, root, data.get("lock_file", "images.lock.json")),
        ratelimit_min_remaining=int(data.get("ratelimit_min_remaining", 10)),
        images=images,
    )


def _lock_file(marked: Marked, name: str, root: Path, value: str) -> Path:
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


def _check_smoke(
    marked: Marked, name: str, path: tuple[str | int, ...], kind: str | None, kinds: tuple[str, ...]
) -> str | None:
    if kind is not None and kind not in kinds:
        raise located_error(
            marked,
            name,
            path,
            f"unknown smoke kind {kind!r}",
            f"use one of: {', '.join(kinds)} (or null for none)",
        )
    return kind


def _build_image(
    marked: Marked,
    name: str,
    root: Path,
    image_name: str,
    spec: dict[str, Any],
    default_platforms: tuple[str, ...],
    default_templates: tuple[str, ...],
    smoke_kinds: tuple[str, ...],
) -> ImageSpec:
    base: tuple[str | int, ...] = ("images", image_name)
    try:
        source = parse_repository(spec["source"])
    except ValueError as exc:
        raise located_error(
            marked,
            name,
            (*base, "source"),
            f"bad source {spec['source']!r}: {exc}",
            "write [HOST/]NAMESPACE/NAME, e.g. docker.io/hashicorp/vault",
        ) from exc
    templates = tuple(spec.get("tags", default_templates))
    if "tags" in spec:
        _check_templates(marked, name, (*base, "tags"), templates)
    mirror = "build" not in spec
    platforms = (
        platform_list(marked, name, (*base, "platforms"), spec["platforms"], mirror=mirror)
        if "platforms" in spec
        else default_platforms
    )
    image_releases = releases(
        marked,
        name,
        base,
        spec["versions"],
        source=source,
        platforms=platforms,
        templates=templates,
        mirror=mirror,
    )
    target = target_path(marked, name, (*base, "target"), spec["target"]) if "target" in spec else image_name
    build: Path | None = None
    dockerfile: Path | None = None
    if "build" in spec:
        build = (root / spec["build"]).resolve()
        if not build.is_dir():
            raise located_error(
                marked,
                name,
                (*base, "build"),
                f"build folder {spec['build']!r} does not exist (looked in {build})",
                "create it with a Dockerfile, fix the path (relative to the catalog), or remove 'build' to mirror the image as it is",
            )
        dockerfile = (build / spec.get("dockerfile", "Dockerfile")).resolve()
        if not dockerfile.is_relative_to(build):
            # The recipe hash and the build both name the Dockerfile relative to the build folder.
            raise located_error(
                marked,
                name,
                (*base, "dockerfile"),
                f"dockerfile {spec['dockerfile']!r} is outside the build folder {spec['build']!r}",
                "move the Dockerfile into the build folder and name it relative to that folder",
            )
        if not dockerfile.is_file():
            raise located_error(
                marked,
                name,
                (*base, "dockerfile" if "dockerfile" in spec else "build"),
                f"no Dockerfile at {dockerfile}",
                "add the Dockerfile or set 'dockerfile:' to its name inside the build folder",
            )
        problem = check_dockerfile(dockerfile)
        if problem:
            raise located_error(
                marked,
                name,
                (*base, "build"),
                f"Dockerfile cannot be pinned: {problem}",
                "start it with 'ARG BASE_IMAGE' then 'FROM ${BASE_IMAGE}'; the tool passes BASE_IMAGE=<source>@sha256:<digest>",
            )
    elif "dockerfile" in spec:
        raise located_error(
            marked,
            name,
            (*base, "dockerfile"),
            "'dockerfile' without 'build'",
            "add 'build: FOLDER' or remove 'dockerfile'",
            key=True,
        )
    elif "build_args" in spec:
        raise located_error(
            marked,
            name,
            (*base, "build_args"),
            "'build_args' without 'build': a mirrored image is not built",
            "add 'build: FOLDER' or remove 'build_args'",
            key=True,
        )
    smoke = _check_smoke(marked, name, (*base, "smoke"), spec.get("smoke"), smoke_kinds)
    image_args = dict(spec.get("build_args", {}))
    variants = [Variant(DEFAULT_VARIANT, image_args, spec.get("description", ""), smoke)]
    for variant_name, declared in (spec.get("variants") or {}).items():
        vspec: dict[str, Any] = declared or {}
        vpath = (*base, "variants", variant_name)
        if variant_name == DEFAULT_VARIANT:
            raise located_error(
                marked,
                name,
                vpath,
                f"variant name {DEFAULT_VARIANT!r} is reserved for the image itself",
                "pick another name",
                key=True,
            )
        if build is None:
            raise located_error(
                marked,
                name,
                vpath,
                "variants need 'build': a mirrored image has no build args",
                "add 'build: FOLDER' or remove 'variants'",
                key=True,
            )
        variant_smoke = (
            _check_smoke(marked, name, (*vpath, "smoke"), vspec["smoke"], smoke_kinds)
            if "smoke" in vspec
            else smoke
        )
        variants.append(
            Variant(
                variant_name,
                image_args | dict(vspec.get("build_args", {})),
                vspec.get("description", spec.get("description", "")),
                variant_smoke,
            )
        )
    return ImageSpec(
        name=image_name,
        source=source,
        versions=tuple(r.version for r in image_releases),
        releases=image_releases,
        target=target,
        build=build,
        dockerfile=dockerfile,
        smoke=smoke,
        title=spec.get("title", image_name),
        description=spec.get("description", ""),
        platforms=platforms,
        tag_templates=templates,
        variants=tuple(variants),
        updates=_update_filter(marked, name, (*base, "updates"), spec.get("updates")),
    )


def _update_filter(
    marked: Marked, name: str, path: tuple[str | int, ...], spec: dict[str, Any] | None
) -> update_rules.UpdateFilter:
    """An image's ``updates:`` (range and exclude patterns), each part checked where it is written."""
    if spec is None:
        return update_rules.NO_FILTER
    try:
        bounds = update_rules.parse_range(spec["range"]) if "range" in spec else ()
    except ValueError as exc:
        raise located_error(
            marked, name, (*path, "range"), f"bad updates range: {exc}", "write e.g. '>=1.14, <2'"
        ) from exc
    patterns = []
    for i, pattern in enumerate(spec.get("exclude", [])):
        try:
            patterns.append(update_rules.compile_exclude(pattern))
        except ValueError as exc:
            raise located_error(
                marked,
                name,
                (*path, "exclude", i),
                f"bad updates exclude pattern: {exc}",
                "write a Python regular expression, e.g. '-ent$'",
            ) from exc
    return update_rules.UpdateFilter(bounds, tuple(patterns))


def _check_unique_targets(marked: Marked, name: str, images: Sequence[ImageSpec]) -> None:
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


def target_repository(registry: str, image: str) -> Repository:
    """``ghcr.io/getsops/ci-container-images`` + ``vault`` -> that registry's ``.../vault`` repository."""
    try:
        return parse_repository(f"{registry.rstrip('/')}/{image}")
    except ValueError as exc:
        raise UsageError(
            f"bad target registry {registry!r}: {exc}",
            fix="use HOST[:PORT]/PATH, e.g. ghcr.io/OWNER/REPO, or 'local'",
        ) from exc
