"""Keyless signing and verification through the cosign CLI (GitHub Actions' OIDC token, Fulcio, Rekor).

This cannot run offline: cosign fetches a short-lived certificate from Fulcio for the workflow's OIDC identity and
logs the signature in Rekor. Tests check the exact command lines and how cosign is started (``ci_images.proc``,
registry credentials in a throwaway DOCKER_CONFIG so no secret is on a command line); the workflow runs it for real.

Which certificates count as ours is an ``IdentityPolicy``, pinned as tightly as cosign allows:

- this repository's images: exactly its publishing workflow file on its default branch
  (``--certificate-identity https://github.com/OWNER/NAME/.github/workflows/ci-images.yml@refs/heads/main``), so
  neither another workflow file nor a run dispatched from an unreviewed branch can sign what verifies;
- the reusable workflow's images: its own file at any ref (the caller picks the ref in its ``uses:``), and the
  caller's repository (``--certificate-github-workflow-repository CALLER``: the certificate's extension
  1.3.6.1.4.1.57264.1.5 names the repository whose run signed), so another repository calling build-images.yml
  cannot sign what verifies as this caller's.

cosign v3 signs into Sigstore bundles and then prints no identity after ``cosign verify`` (see ``sign/certificate.py``):
the identity is the pinned one when the policy pins it exactly, else the certificate's, read from the bundle.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_images import proc
from ci_images.errors import CommandError, SigningError, UsageError
from ci_images.registry.auth import Credentials
from ci_images.sign.certificate import SignerCertificate

COSIGN = "cosign"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
DEFAULT_SERVER = "https://github.com"
# The runner sets both when the job has `permissions: id-token: write`; cosign reads them itself.
OIDC_VARIABLES = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
TIMEOUT = 300.0
SIGN_REPOSITORY = "CI_IMAGES_SIGN_REPOSITORY"
# The workflow file whose certificate signs, relative to its repository (default: PUBLISH_WORKFLOW, or
# REUSABLE_WORKFLOW with SIGN_CALLER).
SIGN_WORKFLOW = "CI_IMAGES_SIGN_WORKFLOW"
# The git ref that publishes (default refs/heads/main): the publishing workflow sets its default branch.
SIGN_REF = "CI_IMAGES_SIGN_REF"
# OWNER/NAME of the repository that calls the reusable workflow: set by build-images.yml only.
SIGN_CALLER = "CI_IMAGES_SIGN_CALLER"
PUBLISH_WORKFLOW = ".github/workflows/ci-images.yml"
REUSABLE_WORKFLOW = ".github/workflows/build-images.yml"
DEFAULT_REF = "refs/heads/main"
# What `cosign verify` prints as the payload type of a v3 bundle signature (cosign pkg/types/predicate.go).
BUNDLE_SIGNATURE_TYPE = "https://sigstore.dev/cosign/sign/v1"


def _regexp_literal(text: str) -> str:
    """``text`` as a literal in Go's RE2 syntax (escape metacharacters only; RE2 refuses some Python escapes)."""
    return re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\1", text)


@dataclass(frozen=True)
class IdentityPolicy:
    """Which keyless certificates verify: an exact SAN or a SAN regexp, the OIDC issuer, and optionally the
    repository whose run signed (a reusable workflow's caller)."""

    identity: str | None = None
    identity_regexp: str | None = None
    workflow_repository: str | None = None
    issuer: str = GITHUB_ISSUER

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise ValueError("an identity policy needs exactly one of identity and identity_regexp")

    def flags(self) -> list[str]:
        """cosign verify's flags for this policy (cmd/cosign/cli/options/certificate.go names them)."""
        flags = (
            ["--certificate-identity", self.identity]
            if self.identity is not None
            else ["--certificate-identity-regexp", str(self.identity_regexp)]
        )
        flags += ["--certificate-oidc-issuer", self.issuer]
        if self.workflow_repository:
            flags += ["--certificate-github-workflow-repository", self.workflow_repository]
        return flags

    def matches(self, cert: SignerCertificate) -> bool:
        """Whether cosign would accept ``cert`` under this policy (the SAN, issuer and repository checks only)."""
        if self.identity is not None and cert.identity != self.identity:
            return False
        if self.identity_regexp is not None and not re.search(self.identity_regexp, cert.identity):
            return False
        if cert.issuer != self.issuer:
            return False
        return not self.workflow_repository or cert.workflow_repository == self.workflow_repository

    def __str__(self) -> str:
        who = self.identity or f"identity matching {self.identity_regexp}"
        return who + (f", run by {self.workflow_repository}" if self.workflow_repository else "")


def publishing_policy(
    repository: str, *, ref: str = DEFAULT_REF, workflow: str = PUBLISH_WORKFLOW, server: str = DEFAULT_SERVER
) -> IdentityPolicy:
    """Exactly ``repository``'s publishing workflow file at ``ref`` (its default branch)."""
    return IdentityPolicy(identity=f"{server.rstrip('/')}/{repository}/{workflow.strip('/')}@{ref}")


def reusable_policy(
    workflow_repository: str, caller: str, *, workflow: str = REUSABLE_WORKFLOW, server: str = DEFAULT_SERVER
) -> IdentityPolicy:
    """The reusable workflow's own file at any ref, in runs of ``caller`` only."""
    regexp = (
        f"^{_regexp_literal(server.rstrip('/'))}/{_regexp_literal(workflow_repository)}/"
        f"{_regexp_literal(workflow.strip('/'))}@"
    )
    return IdentityPolicy(identity_regexp=regexp, workflow_repository=caller)


def signing_repository(env: Mapping[str, str]) -> str | None:
    """OWNER/NAME of the repository whose workflow file signs: CI_IMAGES_SIGN_REPOSITORY (a reusable workflow sets
    it to ``job.workflow_repository``, its own repository), else GITHUB_REPOSITORY (None outside Actions)."""
    return env.get(SIGN_REPOSITORY, "").strip() or env.get("GITHUB_REPOSITORY") or None


def identity_policy(
    env: Mapping[str, str], *, repository: str, server: str = DEFAULT_SERVER
) -> IdentityPolicy:
    """The policy the settings ask for: ``repository`` signs (the signing repository, see signing_repository);
    CI_IMAGES_SIGN_CALLER set means the reusable workflow signs for that caller."""
    workflow = env.get(SIGN_WORKFLOW, "").strip()
    caller = env.get(SIGN_CALLER, "").strip()
    if caller:
        return reusable_policy(repository, caller, workflow=workflow or REUSABLE_WORKFLOW, server=server)
    ref = env.get(SIGN_REF, "").strip() or DEFAULT_REF
    return publishing_policy(repository, ref=ref, workflow=workflow or PUBLISH_WORKFLOW, server=server)


def workflow_identity(env: Mapping[str, str]) -> str | None:
    """The identity this run's keyless signatures carry: SERVER/GITHUB_WORKFLOW_REF (None outside Actions).

    Fulcio names the workflow file that runs the job. In a reusable workflow that is the called file, not
    GITHUB_WORKFLOW_REF's (the caller's, even when the caller lives in the same repository), and the called file's
    ref is not in the environment: None then, until a certificate says which."""
    ref = env.get("GITHUB_WORKFLOW_REF")
    if not ref or env.get(SIGN_CALLER, "").strip() or signing_repository(env) != env.get("GITHUB_REPOSITORY"):
        return None
    return f"{env.get('GITHUB_SERVER_URL', DEFAULT_SERVER).rstrip('/')}/{ref}"


def check_signs_as(env: Mapping[str, str], policy: IdentityPolicy) -> None:
    """UsageError (exit 2), before anything is pushed, when this run would sign with an identity ``policy``
    rejects: a publishing workflow dispatched from another branch, or another workflow file. Its signatures would
    never verify, and the tags would already have moved."""
    own = workflow_identity(env)
    if policy.identity is None or own is None or own == policy.identity:
        return
    raise UsageError(
        f"this run would sign keyless as {own}, but verification accepts only {policy.identity}",
        fix=(
            f"publish from the default branch (run {policy.identity.rsplit('/', 1)[-1].split('@')[0]} there), or set "
            f"{SIGN_REF} / {SIGN_WORKFLOW} to the ref and workflow file that publish"
        ),
    )


def sign_argv(image: str) -> list[str]:
    """``cosign sign --yes REF@DIGEST``: --yes accepts the transparency-log upload non-interactively."""
    if "@sha256:" not in image:
        raise UsageError(f"refusing to sign {image} by tag", fix="sign REF@DIGEST, never a tag that can move")
    return [COSIGN, "sign", "--yes", image]


def verify_argv(image: str, policy: IdentityPolicy) -> list[str]:
    return [COSIGN, "verify", *policy.flags(), image]


def verified_signatures(output: str) -> list[dict[str, Any]]:
    """The JSON list `cosign verify` prints on success (cmd/cosign/cli/verify/common.go ``PrintVerification``):
    one ``{"critical": ..., "optional": ...}`` per verified signature; [] when there is none in ``output``."""
    for line in output.splitlines():
        if not line.lstrip().startswith("["):
            continue
        try:
            verified = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(verified, list):
            return [item for item in verified if isinstance(item, dict)]
    return []


def certificate_identity(output: str) -> str | None:
    """The signing certificate's identity (its SAN) as `cosign verify` prints it for a legacy ``.sig`` signature:
    ``optional.Subject``. A v3 bundle's line has no certificate, hence no Subject (cosign v3 ``transformOutput``):
    None then; see ``is_bundle_output`` and ``sign/bundles.py``."""
    for signature in verified_signatures(output):
        optional = signature.get("optional")
        subject = optional.get("Subject") if isinstance(optional, dict) else None
        if isinstance(subject, str) and subject:
            return subject
    return None


def is_bundle_output(output: str) -> bool:
    """Whether `cosign verify` verified Sigstore bundles (cosign v3's default), which it prints without identity."""
    for signature in verified_signatures(output):
        critical = signature.get("critical")
        if isinstance(critical, dict) and critical.get("type") == BUNDLE_SIGNATURE_TYPE:
            return True
    return False


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
