"""What the benchmarks share: throwaway empty registries in the lab, request counts from their logs, a table."""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from ci_images.loopback.server import RegistryServer, start_registry


@contextmanager
def empty_registry(the_lab: Any, workdir: Path) -> Iterator[RegistryServer]:
    """A new TLS registry with htpasswd auth, signed by the lab's CA (trusted by the engine and by skopeo through
    /etc/docker/certs.d): every measurement starts from an empty target that no tool has seen."""
    server = start_registry(
        workdir, ca=the_lab.ca, htpasswd=(f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(18))
    )
    try:
        yield server
    finally:
        server.stop()


def authfile(server: RegistryServer, path: Path) -> Path:
    """A containers-auth.json for skopeo, so the password is not on its command line."""
    token = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
    path.write_text(json.dumps({"auths": {server.host: {"auth": token}}}), encoding="utf-8")
    path.chmod(0o600)
    return path


def manifest_gets(requests: Sequence[tuple[str, str]]) -> int:
    return sum(1 for method, uri in requests if method == "GET" and "/manifests/" in uri)


def writes(requests: Sequence[tuple[str, str]]) -> int:
    return sum(1 for method, _ in requests if method in {"PUT", "POST", "PATCH"})


def arguments(doc: str | None, *, catalog: bool = True, rounds: int | None = None) -> argparse.Namespace:
    """The options every benchmark takes: --keep-lab, and --catalog or --rounds where it uses them. Others are
    ignored: nox -s bench passes the same options to every benchmark."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if catalog:
        parser.add_argument("--catalog", default=str(REPO_ROOT / "images.yaml"))
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--keep-lab", action="store_true")
    args, _ = parser.parse_known_args()
    return args


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
