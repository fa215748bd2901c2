"""Keyless signing and verification through the cosign CLI (GitHub Actions' OIDC token, Fulcio, Rekor).

This cannot run offline: cosign fetches a short-lived certificate from Fulcio for the workflow's OIDC identity and
logs the signature in Rekor. Tests check the exact command lines and how cosign is started (``ci_images.proc``,
registry credentials in a throwaway DOCKER_CONFIG so no secret is on a command line); the workflow runs it for real.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ci_images import proc
from ci_images.errors import CommandError, SigningError, UsageError
from ci_images.registry.auth import Credentials

COSIGN = "cosign"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
DEFAULT_SERVER = "https://github.com"
# The runner sets both when the job has `permissions: id-token: write`; cosign reads them itself.
OIDC_VARIABLES = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
TIMEOUT = 300.0
SIGN_REPOSITORY = "CI_IMAGES_SIGN_REPOSITORY"


def _regexp_literal(text: str) -> str:
    """``text`` as a literal in Go's RE2 syntax (escape metacharacters only; RE2 refuses some Python escapes)."""
    return re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\1", text)


def identity_regexp(repository: str, server: str = DEFAULT_SERVER) -> str:
    """Certificates of any workflow of ``repository`` (OWNER/NAME): the SAN is SERVER/OWNER/NAME/.github/workflows/
    FILE@REF for a GitHub Actions identity."""
    return f"^{_regexp_literal(server.rstrip('/'))}/{_regexp_literal(repository)}/\\.github/workflows/"


def signing_repository(env: Mapping[str, str]) -> str | None:
    """OWNER/NAME of the repository whose workflow file signs: CI_IMAGES_SIGN_REPOSITORY (a reusable workflow sets
    it to ``job.workflow_repository``, its own repository), else GITHUB_REPOSITORY (None outside Actions)."""
    return env.get(SIGN_REPOSITORY, "").strip() or env.get("GITHUB_REPOSITORY") or None


def workflow_identity(env: Mapping[str, str]) -> str | None:
    """The identity this run's keyless signatures carry: SERVER/GITHUB_WORKFLOW_REF (None outside Actions).

    Fulcio names the workflow file that runs the job. In a reusable workflow that is the called file, in another
    repository than GITHUB_WORKFLOW_REF's (the caller's), and its ref is not in the environment: None then, and the
    identity is known only as "a workflow of the signing repository" until a certificate says which."""
    ref = env.get("GITHUB_WORKFLOW_REF")
    if not ref or signing_repository(env) != env.get("GITHUB_REPOSITORY"):
        return None
    return f"{env.get('GITHUB_SERVER_URL', DEFAULT_SERVER).rstrip('/')}/{ref}"


def sign_argv(image: str) -> list[str]:
    """``cosign sign --yes REF@DIGEST``: --yes accepts the transparency-log upload non-interactively."""
    if "@sha256:" not in image:
        raise UsageError(f"refusing to sign {image} by tag", fix="sign REF@DIGEST, never a tag that can move")
    return [COSIGN, "sign", "--yes", image]


def verify_argv(image: str, regexp: str, issuer: str = GITHUB_ISSUER) -> list[str]:
    return [
        COSIGN,
        "verify",
        "--certificate-identity-regexp",
        regexp,
        "--certificate-oidc-issuer",
        issuer,
        image,
    ]


def certificate_identity(output: str) -> str | None:
    """The signing certificate's identity (its SAN: SERVER/OWNER/NAME/.github/workflows/FILE@REF) as `cosign verify`
    prints it: one JSON line, a list of the verified signatures, each with ``optional.Subject``."""
    for line in output.splitlines():
        if not line.lstrip().startswith("["):
            continue
        try:
            verified = json.loads(line)
        except json.JSONDecodeError:
            continue
        for signature in verified if isinstance(verified, list) else []:
            optional = signature.get("optional") if isinstance(signature, dict) else None
            subject = optional.get("Subject") if isinstance(optional, dict) else None
            if isinstance(subject, str) and subject:
                return subject
    return None


def cosign_on_path(env: Mapping[str, str]) -> bool:
    return shutil.which(COSIGN, path=env.get("PATH")) is not None


def check_can_sign(env: Mapping[str, str]) -> None:
    """UsageError (exit 2), before anything is pushed, when keyless signing cannot work here."""
    if not cosign_on_path(env):
        raise UsageError(
            "keyless signing needs the cosign CLI, and it is not on PATH",
            fix="install it (in GitHub Actions: sigstore/cosign-installer), or sign with a key (COSIGN_KEY)",
        )
    missing = [name for name in OIDC_VARIABLES if not env.get(name)]
    if missing:
        raise UsageError(
            f"keyless signing needs GitHub Actions' OIDC token ({', '.join(missing)} not set)",
            fix="give the job `permissions: id-token: write`, or sign with a key (COSIGN_KEY)",
        )


@contextmanager
def docker_config(host: str, credentials: Credentials | None) -> Iterator[dict[str, str]]:
    """Environment additions that let cosign log in to ``host``: a private DOCKER_CONFIG holding only that login,
    removed afterwards (cosign reads docker's config; its --registry-password would show on the command line)."""
    if credentials is None:
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="ci-images-cosign-"))
    try:
        auth = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        path = folder / "config.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"auths": {host: {"auth": auth}}}, out)
        yield {"DOCKER_CONFIG": str(folder)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_cosign(
    argv: list[str], env: Mapping[str, str], *, host: str, credentials: Credentials | None, check: bool = True
) -> tuple[int, str]:
    """Run cosign (through ci_images.proc); returns (exit code, its output). A failure raises SigningError."""
    with docker_config(host, credentials) as extra:
        try:
            result = proc.run(argv, env={**env, **extra}, check=check, timeout=TIMEOUT)
        except CommandError as exc:
            raise SigningError(
                f"`{' '.join(argv[:2])}` of {argv[-1]} failed (exit {exc.returncode}): {exc.stderr.strip()[-500:]}",
                fix="see cosign's message; keyless signing needs `id-token: write` and network access to Sigstore",
            ) from exc
    return result.returncode, (result.stderr + result.stdout).strip()
