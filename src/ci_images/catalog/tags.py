"""Tag rules: versions, templates and which version an alias (``3.11``, ``latest``) points at. Pure."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_VERSION_RE = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?(?P<pre>-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)
FIELDS = frozenset({"version", "major", "minor", "patch"})
DEFAULT_TEMPLATES: tuple[str, ...] = ("{version}", "{major}.{minor}", "latest")


@dataclass(frozen=True, order=True)
class Version:
    """A release version as upstream tags it: ``1.2``, ``1.2.3``, ``v1.2.3``, ``1.2.3-rc1``."""

    major: int
    minor: int
    patch: int
    # Releases sort after their pre-releases: "" (release) must compare greater than "-rc1".
    release: bool
    pre: str
    text: str

    @property
    def is_prerelease(self) -> bool:
        return not self.release


def parse_version(text: str) -> Version | None:
    match = _VERSION_RE.match(text)
    if not match:
        return None
    pre = match.group("pre") or ""
    return Version(
        major=int(match.group("major")),
        minor=int(match.group("minor")),
        patch=int(match.group("patch") or 0),
        release=not pre,
        pre=pre,
        text=text,
    )


def template_fields(template: str) -> set[str]:
    """The ``{field}`` names a template uses; ValueError on broken braces."""
    names: set[str] = set()
    for _, field_name, spec, conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        if spec or conversion:
            raise ValueError(f"format specs are not supported in {template!r}")
        names.add(field_name)
    return names


def is_alias_template(template: str) -> bool:
    """A template that does not contain the full version names one tag for several versions: an alias."""
    return "version" not in template_fields(template)


def render(template: str, version: str) -> str:
    parsed = parse_version(version)
    values = {"version": version}
    if parsed is not None:
        values |= {"major": str(parsed.major), "minor": str(parsed.minor), "patch": str(parsed.patch)}
    return template.format(**values)


def alias_owners(template: str, versions: Sequence[str]) -> dict[str, str]:
    """For an alias template, map each rendered tag to the version it points at: the highest release version.

    ``{major}.{minor}`` -> the highest patch of each minor line; ``latest`` -> the highest release overall.
    Pre-releases never receive an alias.
    """
    owners: dict[str, tuple[Version, str]] = {}
    for version in versions:
        parsed = parse_version(version)
        if parsed is None or parsed.is_prerelease:
            continue
        tag = render(template, version)
        current = owners.get(tag)
        if current is None or parsed > current[0]:
            owners[tag] = (parsed, version)
    return {tag: version for tag, (_, version) in owners.items()}


def variant_tag(tag: str, variant: str, default_variant: str) -> str:
    """Docker library convention: ``3.11.7-seeded``, and plain ``seeded`` for ``latest``."""
    if variant == default_variant:
        return tag
    if tag == "latest":
        return variant
    return f"{tag}-{variant}"


def tags_for(templates: Iterable[str], version: str, versions: Sequence[str]) -> list[str]:
    """All tags (without variant suffix) that ``version`` receives, in template order, without duplicates."""
    result: list[str] = []
    for template in templates:
        if is_alias_template(template):
            for tag, owner in alias_owners(template, versions).items():
                if owner == version and tag not in result:
                    result.append(tag)
        else:
            tag = render(template, version)
            if tag not in result:
                result.append(tag)
    return result
