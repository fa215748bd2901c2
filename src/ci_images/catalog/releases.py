"""Per-version settings and the target path of an image: the parts of ``images.yaml`` that say, per version, where
upstream keeps it and which platforms to take, and under which repository path an image lands.

A version is either an upstream tag (``"3.11.7"``) or a mapping with the tag under ``version`` and settings for that
version only (``{version: "1.10.0", source: docker.io/library/vault, platforms: [linux/amd64]}``). ``platforms: all``
(mirrors only) takes every platform upstream's index lists, so a mirror stays byte for byte upstream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ci_images.catalog import tags as tag_rules
from ci_images.catalog.model import ALL_PLATFORMS, ALL_PLATFORMS_WORD, Release
from ci_images.catalog.platforms import platform_problem
from ci_images.catalog.refs import Repository, is_valid_tag, parse_repository
from ci_images.catalog.schema import located_error
from ci_images.catalog.yamlmarks import Marked

Where = tuple[str | int, ...]


def check_platform(marked: Marked, name: str, path: Sequence[str | int], value: str) -> str:
    problem = platform_problem(value)
    if problem:
        raise located_error(
            marked,
            name,
            path,
            f"bad platform {value!r}: {problem}",
            "write OS/ARCH[/VARIANT], e.g. linux/amd64, linux/arm64 or linux/arm/v7",
        )
    return value


def platform_list(
    marked: Marked, name: str, path: Where, value: str | list[str], *, mirror: bool
) -> tuple[str, ...]:
    """An image's or a version's ``platforms``: a list of platforms, or ``all`` on a mirrored image."""
    if isinstance(value, str):
        if value != ALL_PLATFORMS_WORD:
            raise located_error(
                marked,
                name,
                path,
                f"platforms must be a list or the word {ALL_PLATFORMS_WORD!r}, not {value!r}",
                "write a list like [linux/amd64, linux/arm64], or all (mirrors: every platform upstream has)",
            )
        if not mirror:
            raise located_error(
                marked,
                name,
                path,
                f"platforms: {ALL_PLATFORMS_WORD} is for mirrored images only: a build needs to know its platforms",
                "list the platforms to build, e.g. [linux/amd64, linux/arm64], or remove 'build' to mirror",
            )
        return ALL_PLATFORMS
    return tuple(check_platform(marked, name, (*path, i), p) for i, p in enumerate(value))


def target_path(marked: Marked, name: str, path: Where, value: str) -> str:
    """``target:``: a repository path under the registry prefix (``mirror/nsmithuk/local-kms``), never a full name."""
    first = value.split("/", 1)[0]
    if "." in first or ":" in first or first == "localhost":
        raise located_error(
            marked,
            name,
            path,
            f"bad target {value!r}: it starts with a registry host; the registry comes from 'registry:'",
            "write a repository path under the registry, e.g. mirror/nsmithuk/local-kms (no host, no tag)",
        )
    try:
        repo = parse_repository(f"registry.invalid/{value}")
    except ValueError as exc:
        raise located_error(
            marked,
            name,
            path,
            f"bad target {value!r}: {exc}",
            "write a repository path under the registry, e.g. mirror/nsmithuk/local-kms (no host, no tag)",
        ) from exc
    return repo.path


def _source(marked: Marked, name: str, path: Where, value: str) -> Repository:
    try:
        return parse_repository(value)
    except ValueError as exc:
        raise located_error(
            marked,
            name,
            path,
            f"bad source {value!r}: {exc}",
            "write [HOST/]NAMESPACE/NAME, e.g. docker.io/hashicorp/vault",
        ) from exc


def releases(
    marked: Marked,
    name: str,
    base: Where,
    declared: list[str | dict[str, Any]],
    *,
    source: Repository,
    platforms: tuple[str, ...],
    templates: Sequence[str],
    mirror: bool,
) -> tuple[Release, ...]:
    """The image's versions with their settings, in catalog order; the image's ``source`` and ``platforms`` fill in
    what a version does not say."""
    needs_semver = any(tag_rules.template_fields(t) & {"major", "minor", "patch"} for t in templates)
    found: list[Release] = []
    for i, item in enumerate(declared):
        settings: dict[str, Any] = item if isinstance(item, dict) else {"version": item}
        where: Where = (*base, "versions", i) + (("version",) if isinstance(item, dict) else ())
        version: str = settings["version"]
        if not is_valid_tag(version):
            raise located_error(
                marked,
                name,
                where,
                f"bad version {version!r}: not a valid image tag",
                "versions are upstream tags: letters, digits, '.', '_' and '-', up to 128 characters",
            )
        if needs_semver and tag_rules.parse_version(version) is None:
            raise located_error(
                marked,
                name,
                where,
                f"bad version {version!r}: the tag templates need MAJOR.MINOR[.PATCH]",
                "use a release version like 1.2.3, or drop {major}/{minor}/{patch} from this image's tags",
            )
        if any(r.version == version for r in found):
            raise located_error(
                marked, name, where, f"version {version!r} is listed twice", "remove the duplicate"
            )
        item_path: Where = (*base, "versions", i)
        found.append(
            Release(
                version=version,
                source=_source(marked, name, (*item_path, "source"), settings["source"])
                if "source" in settings
                else source,
                platforms=platform_list(
                    marked, name, (*item_path, "platforms"), settings["platforms"], mirror=mirror
                )
                if "platforms" in settings
                else platforms,
            )
        )
    return tuple(found)
