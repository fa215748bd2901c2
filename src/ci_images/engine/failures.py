"""What the engine's errors mean: which pull failures a retry can get past, and the error (and fix) each one becomes."""

from __future__ import annotations

from ci_images.errors import CiImagesError, EngineError, RateLimitError, RegistryError

# What the engine says when a registry is briefly unable, or a transfer was cut short: worth another try. Refusals
# (unauthorized, denied, not found) are final.
_TRANSIENT = (
    "toomanyrequests",
    "too many requests",
    "429",
    "500 internal",
    "502",
    "503",
    "504",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "internal server error",
    "connection reset",
    "broken pipe",
    "unexpected eof",
    "eof",
    "timeout",
    "timed out",
    "connection refused",
    "verification failed",  # a truncated blob does not match its digest
)


def is_transient(failure: str) -> bool:
    """True when the engine's pull error is one a retry can get past."""
    lowered = failure.lower()
    if any(word in lowered for word in ("unauthorized", "denied", "not found", "manifest unknown")):
        return False
    return any(word in lowered for word in _TRANSIENT)


def pull_error(ref: str, platform: str, failure: str) -> CiImagesError:
    text = f"pull of {ref} ({platform}) failed: {failure}"
    lowered = failure.lower()
    if "toomanyrequests" in lowered or "rate limit" in lowered:
        return RateLimitError(
            text, fix="wait for the pull quota to refill, or authenticate (CI_IMAGES_UPSTREAM_USER)"
        )
    if any(word in lowered for word in ("unauthorized", "denied", "not found", "manifest unknown")):
        return RegistryError(text, fix="check the reference, the platform and the upstream credentials")
    return EngineError(text, fix="check that the engine reaches the registry (and trusts its certificate)")


def engine_fix() -> str:
    return (
        "start a Docker engine (e.g. `dockerd --bridge=none --iptables=false &` as root) "
        "or point DOCKER_HOST at one that answers `docker info`"
    )
