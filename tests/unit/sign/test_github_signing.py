"""Keyless signing as cosign v3 and GitHub Actions really behave (issue 18, points 4, 5 and 6): cosign v3 prints no
identity for a bundle, yet the lock file records the exact signer; verification pins the publishing workflow on the
default branch (and the reusable workflow's caller); README names the cosign versions and the exact commands.

A stand-in `cosign` prints what cosign v3.0.6 prints (fixtures from its own source, tests/unit/sign/fixtures/sigstore)
and records how it was started: this tests our side of the call; cosign itself cannot run offline.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ci_images.errors import UsageError
from ci_images.sign import keyless
from ci_images.sign.choose import configured_signer, lock_verifier
from tests.unit.test_workflows import ROOT, load, workflows

FIXTURES = Path(__file__).parent / "fixtures" / "sigstore"
REPOSITORY = "getsops/ci-container-images"
URL = f"https://github.com/{REPOSITORY}"
PUBLISHER = f"https://github.com/{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/main"
DIGEST = "sha256:" + "ab" * 32
README = ROOT / "README.md"


def _cosign_printing(folder: Path, output_file: Path, record: Path) -> dict[str, str]:
    script = folder / "cosign"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\ncat {output_file}\n', encoding="utf-8")
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def _verify_with(tmp_path: Path, fixture: str, env: Mapping[str, str]) -> tuple[Any, list[str]]:
    from ci_images.catalog.refs import parse_repository
    from ci_images.registry.client import RegistryClient

    record = tmp_path / "argv"
    full = {**_cosign_printing(tmp_path, FIXTURES / fixture, record), **env}
    verifier = lock_verifier(None, True, full, default_url=URL)
    assert verifier is not None
    repository = parse_repository(f"ghcr.io/{REPOSITORY}/vault")
    verdict = verifier.verify(RegistryClient("ghcr.io"), repository, DIGEST)
    return verdict, record.read_text().splitlines()


def test_4_a_bundle_verified_from_a_branch_run_records_the_publishing_identity(tmp_path: Path) -> None:
    """cosign v3 prints a bundle without Subject; the lock job of a run dispatched on a branch must not record its own
    GITHUB_WORKFLOW_REF (refs/heads/feature) for digests the default branch signed."""
    env = {
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/feature",
    }
    verdict, _ = _verify_with(tmp_path, "cosign-verify-bundle-sign.txt", env)
    assert verdict.ok and verdict.signer == PUBLISHER


def test_6_verification_pins_the_publishing_workflow_on_the_default_branch(tmp_path: Path) -> None:
    env = {"GITHUB_REPOSITORY": REPOSITORY, "CI_IMAGES_SIGN_REF": "refs/heads/main"}
    _, argv = _verify_with(tmp_path, "cosign-verify-bundle-sign.txt", env)
    assert argv[:5] == [
        "verify",
        "--certificate-identity",
        PUBLISHER,
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
    ]
    assert "--certificate-identity-regexp" not in argv


def test_6_the_reusable_workflow_is_pinned_to_its_caller(tmp_path: Path) -> None:
    env = {
        "GITHUB_REPOSITORY": "someorg/app",
        "CI_IMAGES_SIGN_REPOSITORY": REPOSITORY,
        "CI_IMAGES_SIGN_WORKFLOW": ".github/workflows/build-images.yml",
        "CI_IMAGES_SIGN_CALLER": "someorg/app",
    }
    _, argv = _verify_with(tmp_path, "cosign-verify-bundle-sign.txt", env)
    assert argv[:7] == [
        "verify",
        "--certificate-identity-regexp",
        r"^https://github\.com/getsops/ci-container-images/\.github/workflows/build-images\.yml@",
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        "--certificate-github-workflow-repository",
        "someorg/app",
    ]


def test_6_a_publish_dispatched_from_a_branch_stops_before_pushing(tmp_path: Path) -> None:
    cosign = tmp_path / "cosign"
    cosign.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    cosign.chmod(0o755)
    env = {
        "PATH": str(tmp_path),
        "ACTIONS_ID_TOKEN_REQUEST_URL": "u",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t",
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/feature",
    }
    with pytest.raises(UsageError, match="verification accepts only") as caught:
        configured_signer(None, True, env, default_url=URL)
    assert caught.value.exit_code == 2
    main = {**env, "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/main"}
    assert configured_signer(None, True, main, default_url=URL) is not None


def test_6_only_the_default_branch_publishes() -> None:
    data = load(workflows()["ci-images.yml"])
    publish = data["jobs"]["publish"]
    assert "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in publish["if"]
    assert "github.event_name == 'schedule'" in publish["if"]
    guard = data["jobs"]["plan"]["steps"][0]
    assert guard["env"]["REF"] == "${{ github.ref }}" and "refs/heads/${DEFAULT_BRANCH}" in guard["run"]
    for job in ("publish", "lock"):
        assert data["jobs"][job]["env"]["CI_IMAGES_SIGN_REF"] == (
            "refs/heads/${{ github.event.repository.default_branch || github.ref_name }}"
        )


# ---- 5: README names the cosign versions and the exact commands -------------------------------------------------------


def _readme_cosign_verifies(text: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith("cosign verify"):
                words = shlex.split(line)
                # Up to a redirection or a pipe; `verify-attestation --type T` verifies with the same identity flags.
                cut = next((i for i, w in enumerate(words) if w in {">", "|"}), len(words))
                words = words[:cut]
                if words[1] == "verify-attestation" and "--type" in words:
                    at = words.index("--type")
                    del words[at : at + 2]
                commands.append(words)
    return commands


def test_5_readme_names_the_cosign_version_and_the_exact_pinned_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "cosign v3.0 or later" in text and "cosign v2" in text
    keyless_commands = [c for c in _readme_cosign_verifies(text) if "--key" not in c]
    publishing = keyless.publishing_policy(REPOSITORY).flags()
    reusable = keyless.reusable_policy(REPOSITORY, "OWNER/REPO").flags()
    assert len(keyless_commands) >= 3
    for command in keyless_commands:
        flags = command[2:-1]
        assert flags in (publishing, reusable), command
