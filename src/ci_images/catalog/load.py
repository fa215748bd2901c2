"""The catalog (``images.yaml``): loaded, validated, and frozen into dataclasses.

Validation runs in two passes: the JSON Schema (shape and types) and semantic checks that need the file system or
cross-entry knowledge (build folders, Dockerfiles, tag collisions). Every error carries file:line:column and a fix.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ci_images.catalog import tags as tag_rules
from ci_images.catalog import updates as update_rules
from ci_images.catalog.checks import (
    check_dockerfile,
    check_templates,
    check_unique_targets,
    lock_file_path,
)
from ci_images.catalog.model import DEFAULT_VARIANT, Catalog, ImageSpec, Variant
from ci_images.catalog.probes import SmokeSpec, parse_smoke
from ci_images.catalog.refs import Repository, normalize_mirror, parse_repository
from ci_images.catalog.releases import check_platform, platform_list, releases, target_path
from ci_images.catalog.schema import Memo, located_error, validate_schema
from ci_images.catalog.yamlmarks import Marked, decode, load_marked
from ci_images.errors import UsageError

CATALOG_ENV = "CI_IMAGES_CATALOG"
DEFAULT_CATALOG = "images.yaml"
DEFAULT_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64")


def catalog_path(
    explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """--catalog, else CI_IMAGES_CATALOG, else ./images.yaml."""
    env = os.environ if env is None else env
    return Path(explicit or env.get(CATALOG_ENV) or DEFAULT_CATALOG)


def load_catalog(
    path: str | os.PathLike[str], *, smoke_kinds: Collection[str], memo: Memo | None = None
) -> Catalog:
    """Load and validate the catalog at ``path``; ``smoke_kinds`` are the probe names ``smoke:`` may give besides the
    declared types (the callers pass ``ci_images.smoke.plugins.known_probes()``, the built-ins and the installed
    plugins: the catalog layer knows no adapter); ``memo`` remembers catalogs that passed the JSON Schema (the
    commands pass one in the cache folder), so an unchanged catalog skips that pass. Every other check runs
    every time."""
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
    validate_schema(marked, name, source=data, memo=memo)
    return _build(marked, file, name, tuple(smoke_kinds))


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
        check_templates(marked, name, ("tags",), default_templates)
    images = tuple(
        _build_image(marked, name, root, image_name, spec, platforms, default_templates, smoke_kinds)
        for image_name, spec in data["images"].items()
    )
    check_unique_targets(marked, name, images)
    return Catalog(
        path=file,
        registry=registry,
        upstream_mirror=mirror,
        platforms=platforms,
        lock_file=lock_file_path(marked, name, root, data.get("lock_file", "images.lock.json")),
        ratelimit_min_remaining=int(data.get("ratelimit_min_remaining", 10)),
        images=images,
    )


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
        check_templates(marked, name, (*base, "tags"), templates)
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
    build, dockerfile = _build_folder(marked, name, root, base, spec)
    smoke = parse_smoke(marked, name, (*base, "smoke"), spec.get("smoke"), smoke_kinds)
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
        variants=_variants(marked, name, base, spec, smoke, smoke_kinds, built=build is not None),
        updates=_update_filter(marked, name, (*base, "updates"), spec.get("updates")),
    )


def _build_folder(
    marked: Marked, name: str, root: Path, base: tuple[str | int, ...], spec: dict[str, Any]
) -> tuple[Path | None, Path | None]:
    """The build folder and its Dockerfile (both None for a mirror), checked where the catalog names them."""
    if "build" not in spec:
        for key, what in (("dockerfile", "'dockerfile'"), ("build_args", "'build_args'")):
            if key in spec:
                raise located_error(
                    marked,
                    name,
                    (*base, key),
                    f"{what} without 'build'"
                    + (": a mirrored image is not built" if key == "build_args" else ""),
                    f"add 'build: FOLDER' or remove '{key}'",
                    key=True,
                )
        return None, None
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
    return build, dockerfile


def _variants(
    marked: Marked,
    name: str,
    base: tuple[str | int, ...],
    spec: dict[str, Any],
    smoke: SmokeSpec | None,
    smoke_kinds: tuple[str, ...],
    *,
    built: bool,
) -> tuple[Variant, ...]:
    """The plain variant first, then the declared ones, each with the image's build args and smoke test unless it
    says its own."""
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
        if not built:
            raise located_error(
                marked,
                name,
                vpath,
                "variants need 'build': a mirrored image has no build args",
                "add 'build: FOLDER' or remove 'variants'",
                key=True,
            )
        variant_smoke = (
            parse_smoke(marked, name, (*vpath, "smoke"), vspec["smoke"], smoke_kinds)
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
    return tuple(variants)


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


def target_repository(registry: str, image: str) -> Repository:
    """``ghcr.io/getsops/ci-container-images`` + ``vault`` -> that registry's ``.../vault`` repository."""
    try:
        return parse_repository(f"{registry.rstrip('/')}/{image}")
    except ValueError as exc:
        raise UsageError(
            f"bad target registry {registry!r}: {exc}",
            fix="use HOST[:PORT]/PATH, e.g. ghcr.io/OWNER/REPO, or 'local'",
        ) from exc
