"""Which upstream tags are newer releases of an image: the rules behind `invoke outdated` and `invoke bump`. Pure.

A tag counts when it reads as a version (``tags.parse_version``) of the same shape as the newest cataloged version
(``v`` prefix or not, as many dot-separated numbers): ``1.21`` and ``latest`` are aliases upstream keeps moving, not
releases to add. Releases newer than the newest cataloged version are "newer"; pre-releases newer than every
release in view are listed apart and never added by `bump`. An image's optional ``updates:`` filter in the catalog
narrows both lists::

    updates:
      range: ">=1.14, <2"           # comparisons on MAJOR[.MINOR[.PATCH]], comma-separated
      exclude: ["-ent$", "^1\\.15\\."]  # regular expressions; a tag any of them finds is left out
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ci_images.catalog.tags import Version, parse_version

_OPERATORS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_BOUND_RE = re.compile(
    r"^(>=|<=|==|!=|>|<)\s*(0|[1-9]\d{0,8})(?:\.(0|[1-9]\d{0,8}))?(?:\.(0|[1-9]\d{0,8}))?$"
)


@dataclass(frozen=True)
class Bound:
    """One comparison: ``<2`` compares the major number only, ``>=1.14`` the first two numbers."""

    op: str
    numbers: tuple[int, ...]

    def admits(self, version: Version) -> bool:
        mine = (version.major, version.minor, version.patch)[: len(self.numbers)]
        return _OPERATORS[self.op](mine, self.numbers)

    def __str__(self) -> str:
        return self.op + ".".join(map(str, self.numbers))


def parse_range(text: str) -> tuple[Bound, ...]:
    """``">=1.14, <2"`` -> two bounds; ValueError naming the part that is not a comparison."""
    bounds = []
    for part in text.split(","):
        match = _BOUND_RE.match(part.strip())
        if not match:
            raise ValueError(f"{part.strip()!r} is not a comparison like >=1.14 or <2")
        numbers = tuple(int(n) for n in match.groups()[1:] if n is not None)
        bounds.append(Bound(match.group(1), numbers))
    return tuple(bounds)


def compile_exclude(pattern: str) -> re.Pattern[str]:
    """A regular expression of ``exclude``; ValueError with the reason when it does not compile."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from exc


@dataclass(frozen=True)
class UpdateFilter:
    """An image's ``updates:`` setting: a version range and exclude patterns (both optional)."""

    bounds: tuple[Bound, ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    def admits(self, tag: str, version: Version) -> bool:
        if any(pattern.search(tag) for pattern in self.exclude):
            return False
        return all(bound.admits(version) for bound in self.bounds)

    def as_record(self) -> dict[str, object]:
        return {"range": ", ".join(map(str, self.bounds)), "exclude": [p.pattern for p in self.exclude]}


NO_FILTER = UpdateFilter()


def shape(version: Version) -> tuple[bool, int]:
    """(has a ``v`` prefix, how many numbers): ``1.21.4`` and ``1.21`` differ, so aliases never pass for releases."""
    numbers = version.text.removeprefix("v").split("-", 1)[0].split("+", 1)[0]
    return version.text.startswith("v"), numbers.count(".") + 1


@dataclass(frozen=True)
class Newer:
    """What upstream holds beyond the catalog: releases to add and pre-releases to know about, oldest first."""

    current: str | None  # the newest cataloged version; None: no cataloged version reads as a version
    newer: tuple[str, ...]
    prereleases: tuple[str, ...]


def newer_tags(cataloged: Sequence[str], upstream: Iterable[str], wanted: UpdateFilter = NO_FILTER) -> Newer:
    """Upstream tags newer than the newest of ``cataloged``, in version order, with ``wanted`` applied."""
    parsed = [v for v in map(parse_version, cataloged) if v is not None]
    if not parsed:
        return Newer(None, (), ())
    current = max(parsed)
    known = set(cataloged)
    candidates = sorted(
        version
        for version in map(parse_version, set(upstream))
        if version is not None
        and version.text not in known
        and version > current
        and shape(version) == shape(current)
        and wanted.admits(version.text, version)
    )
    releases = [v for v in candidates if v.release]
    ceiling = max([current, *releases])
    prereleases = [v for v in candidates if v.is_prerelease and v > ceiling]
    return Newer(current.text, tuple(v.text for v in releases), tuple(v.text for v in prereleases))
