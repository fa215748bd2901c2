"""Platforms as catalogs and flags write them: ``OS/ARCH[/VARIANT]`` with the names OCI images use."""

from __future__ import annotations

import re

KNOWN_OS = frozenset({"linux"})
KNOWN_ARCHES = frozenset({"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"})


def platform_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a platform, or None (``linux/amd64``, ``linux/arm/v7``)."""
    parts = value.split("/")
    if len(parts) not in (2, 3):
        return "not OS/ARCH[/VARIANT]"
    if parts[0] not in KNOWN_OS:
        return f"unknown OS {parts[0]!r} (known: {', '.join(sorted(KNOWN_OS))})"
    if parts[1] not in KNOWN_ARCHES:
        return f"unknown architecture {parts[1]!r} (known: {', '.join(sorted(KNOWN_ARCHES))})"
    if len(parts) == 3 and not re.fullmatch(r"v[0-9]+", parts[2]):
        return f"unknown variant {parts[2]!r} (variants look like v7 or v8)"
    return None
