"""Run-wide settings: parallelism, what to do, and this repository's revision, URL and build time for the labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ci_images import proc
from ci_images.errors import CommandError


def repository_revision(root: Path, env: Mapping[str, str]) -> str:
    """This repository's commit: GITHUB_SHA in Actions, else git, else 'unknown'."""
    if env.get("GITHUB_SHA"):
        return env["GITHUB_SHA"]
    try:
        result = proc.run(["git", "-C", root, "rev-parse", "HEAD"], check=False, timeout=10)
    except CommandError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def repository_url(env: Mapping[str, str], default: str) -> str:
    if env.get("GITHUB_REPOSITORY"):
        return f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}"
    return default


def created_timestamp(env: Mapping[str, str]) -> str:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else now."""
    epoch = env.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> str:
    """Now, as a provenance writes times (RFC 3339, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


DEFAULT_SOURCE_URL = "https://github.com/getsops/ci-container-images"


@dataclass
class RunSettings:
    jobs: int = 2
    fail_fast: bool = False
    publish: bool = False  # upload and move tags (push-images); False: build/test only
    smoke: bool = True
    keep_images: bool = False  # keep a push's per-platform images in the engine after upload
    revision: str = "unknown"
    created: str = ""
    source_url: str = DEFAULT_SOURCE_URL
    sign_recursive: bool = True  # with a signer: also sign each platform manifest
    attest: bool = True  # with a signer: attach provenance and SBOM attestations to what is published
    catalog_file: Path | None = None  # where the catalog is (a provenance names it in its repository)
    started_on: str = (
        ""  # when the command started (RFC 3339, UTC): a provenance's runDetails.metadata.startedOn
    )
