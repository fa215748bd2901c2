"""Option values: each check reads one kind of text (a number, a glob, a registry, a path...) and returns it
converted, or raises UsageError naming where the value came from (the flag or the environment variable), what is
wrong, and how to fix it. The option table (options.py) names one of these per option."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ci_images.catalog.platforms import platform_problem
from ci_images.catalog.refs import normalize_mirror, parse_repository
from ci_images.errors import UsageError
from ci_images.oci import LOCAL_REGISTRY_PORT, LOOPBACK, refuse_plain_http

STDOUT = "-"  # --json without a path: standard output
LOCAL = "local"


def bad_value(where: str, value: object, what: str, fix: str) -> UsageError:
    return UsageError(f"{where} {value!r}: {what}", fix=fix)


def text(value: str, where: str) -> str:
    if not value.strip():
        raise bad_value(where, value, "must not be empty", f"give {where} a value or leave it out")
    return value


def whole_number(value: str, where: str, *, minimum: int) -> int:
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses.
    if not re.fullmatch(r"[0-9]{1,9}", value.strip()):
        raise bad_value(
            where, value, "not a whole number", f"write digits, {minimum} or more, e.g. {where} {minimum + 1}"
        )
    number = int(value)
    if number < minimum:
        raise bad_value(where, value, f"must be {minimum} or more", f"e.g. {where} {minimum + 1}")
    return number


def positive_number(value: str, where: str) -> int:
    return whole_number(value, where, minimum=1)


def count(value: str, where: str) -> int:
    return whole_number(value, where, minimum=0)


def globs(value: str, where: str) -> list[str]:
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        raise bad_value(
            where,
            value,
            "an empty pattern",
            "give image names or globs, comma-separated, e.g. --images vault",
        )
    return parts


def platform_list(value: str, where: str) -> list[str]:
    platforms = [p.strip() for p in value.split(",")]
    for platform in platforms:
        problem = platform_problem(platform)
        if problem:
            raise bad_value(
                where, platform, problem, "write OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64"
            )
    return platforms


def local_address(value: str, where: str = "--registry") -> tuple[str, int] | None:
    """``local`` -> (127.0.0.1, 5000), ``local:5050`` -> (127.0.0.1, 5050); None for any other registry."""
    name, _, port = value.partition(":")
    if name != LOCAL:
        return None
    if not port:
        return LOOPBACK, LOCAL_REGISTRY_PORT
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise bad_value(
            where, value, "no such port", "write local, or local:PORT with a port from 1024 to 65535"
        )
    return LOOPBACK, int(port)


def registry(value: str, where: str) -> str:
    value = text(value, where).strip().rstrip("/")
    if local_address(value, where) is not None:
        return value
    try:
        parse_repository(f"{value}/probe")
    except ValueError as exc:
        raise bad_value(
            where,
            value,
            str(exc),
            "write HOST[:PORT]/PATH (e.g. ghcr.io/OWNER/REPO), or local[:PORT] for the embedded registry",
        ) from exc
    if "/" not in value:
        raise bad_value(
            where, value, "names a host without a path", "write HOST[:PORT]/PATH, e.g. ghcr.io/OWNER/REPO"
        )
    return value


def local_registry(value: str, where: str) -> str:
    """``local`` or ``local:PORT``: the embedded registry, the only one registry-down stops."""
    value = text(value, where).strip()
    if local_address(value, where) is None:
        raise bad_value(
            where,
            value,
            "is not the embedded local registry",
            "give local or local:PORT (registry-down stops only that one)",
        )
    return value


def mirror(value: str, where: str) -> str:
    try:
        host = normalize_mirror(text(value, where))
    except ValueError as exc:
        raise bad_value(
            where, value, str(exc), "write host[:port], e.g. mirror.gcr.io or 127.0.0.1:5001"
        ) from exc
    if value.strip().startswith("http://"):
        refuse_plain_http(host, f"{where} {value!r}")
        return f"http://{host}"
    return host


def output_path(value: str, where: str) -> str:
    """A file the command will write: not a directory, and somewhere it can be created."""
    if value == STDOUT:
        return value
    path = Path(text(value, where))
    if path.is_dir():
        raise bad_value(where, value, "is a directory", f"name a file, e.g. {where} {path / 'report.json'}")
    parent = next((p for p in (path.absolute(), *path.absolute().parents) if p.exists()), Path("/"))
    if parent != path.absolute() and not parent.is_dir():
        raise bad_value(where, value, f"{parent} is not a directory", "choose a path inside a directory")
    if not os.access(parent if parent != path.absolute() else path, os.W_OK):
        raise bad_value(where, value, f"{parent} is not writable", "choose a path you may write to")
    return value


def key_ref(value: str, where: str) -> str:
    """A key as cosign names one: a path, or env://VAR (the variable holds the PEM)."""
    value = text(value, where).strip()
    if value.startswith("env://"):
        if not re.fullmatch(r"env://[A-Za-z_][A-Za-z0-9_]*", value):
            raise bad_value(
                where, value, "is not env://VARIABLE", "write env://NAME of a variable holding the PEM"
            )
        return value
    if Path(value).expanduser().is_dir():
        raise bad_value(
            where,
            value,
            "is a directory",
            "name the key file in it (cosign.key to sign, cosign.pub to verify)",
        )
    return value


def folder(value: str, where: str) -> str:
    path = Path(text(value, where))
    if path.exists() and not path.is_dir():
        raise bad_value(where, value, "is not a directory", "name a folder for cosign.key and cosign.pub")
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})


_FALSE = frozenset({"0", "false", "no", "off"})


def env_flag(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_value(
        where, value, "is not a yes/no value", f"set {where}=1 (or true) to turn it on, 0 to turn it off"
    )
