"""Keyless identity: what `cosign verify` prints (legacy and bundle mode, fixtures from cosign's own source) and the
identity policies. Pure: no registry, no cosign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_images.errors import UsageError
from ci_images.sign import keyless
from ci_images.sign.certificate import bundle_certificate

FIXTURES = Path(__file__).parent / "fixtures" / "sigstore"
SIGSTORE_JS = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _bundle(name: str) -> dict[str, object]:
    document: dict[str, object] = json.loads(_fixture(name))
    return document


def test_legacy_output_names_the_certificate_s_subject() -> None:
    """cosign v3.0.6 TestPrintVerification: a legacy .sig signature's line carries optional.Subject."""
    output = _fixture("cosign-verify-legacy.txt")
    assert keyless.certificate_identity(output) == "subject"
    assert not keyless.is_bundle_output(output)
    (signature,) = keyless.verified_signatures(output)
    assert signature["optional"]["githubWorkflowRepository"] == "myWorkflowRepository"


@pytest.mark.parametrize("name", ["cosign-verify-bundle-transform.txt", "cosign-verify-bundle-sign.txt"])
def test_bundle_output_names_no_identity(name: str) -> None:
    """cosign v3's transformOutput: the bundle's in-toto subject, no certificate, so no Subject."""
    output = _fixture(name)
    assert keyless.certificate_identity(output) is None
    (signature,) = keyless.verified_signatures(output)
    assert "Subject" not in (signature["optional"] or {})


def test_what_cosign_sign_v3_writes_is_recognised_as_a_bundle() -> None:
    assert keyless.is_bundle_output(_fixture("cosign-verify-bundle-sign.txt"))
    assert not keyless.is_bundle_output(
        _fixture("cosign-verify-bundle-transform.txt")
    )  # another predicate type
    assert keyless.verified_signatures("Error: no matching signatures\n") == []


def test_policies_accept_what_cosign_would() -> None:
    cert = bundle_certificate(_bundle("sigstore-go-bundle-provenance.json"))
    assert cert is not None
    exact = keyless.publishing_policy("sigstore/sigstore-js", workflow=".github/workflows/release.yml")
    assert exact.identity == SIGSTORE_JS and exact.matches(cert)
    assert not keyless.publishing_policy("sigstore/sigstore-js").matches(
        cert
    )  # ci-images.yml, not release.yml
    on_branch = keyless.publishing_policy(
        "sigstore/sigstore-js", workflow=".github/workflows/release.yml", ref="refs/heads/feature"
    )
    assert not on_branch.matches(cert)
    reusable = keyless.reusable_policy(
        "sigstore/sigstore-js", "sigstore/sigstore-js", workflow=".github/workflows/release.yml"
    )
    assert reusable.matches(cert)
    assert not keyless.reusable_policy(
        "sigstore/sigstore-js", "someone/else", workflow=".github/workflows/release.yml"
    ).matches(cert)
    with pytest.raises(ValueError, match="exactly one"):
        keyless.IdentityPolicy()


def test_the_policy_follows_the_settings() -> None:
    repository = "getsops/ci-container-images"
    assert keyless.identity_policy({}, repository=repository) == keyless.publishing_policy(repository)
    on_trunk = keyless.identity_policy({"CI_IMAGES_SIGN_REF": "refs/heads/trunk"}, repository=repository)
    assert (
        on_trunk.identity
        == f"https://github.com/{repository}/.github/workflows/ci-images.yml@refs/heads/trunk"
    )
    caller = keyless.identity_policy({"CI_IMAGES_SIGN_CALLER": "o/app"}, repository=repository)
    assert caller == keyless.reusable_policy(repository, "o/app")
    assert str(caller).endswith("run by o/app")


def test_a_run_that_would_sign_as_another_identity_is_refused() -> None:
    policy = keyless.publishing_policy("o/r")
    branch = {
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_WORKFLOW_REF": "o/r/.github/workflows/ci-images.yml@refs/heads/x",
    }
    with pytest.raises(UsageError, match=r"refs/heads/x.*accepts only") as caught:
        keyless.check_signs_as(branch, policy)
    assert "CI_IMAGES_SIGN_REF" in str(caught.value)
    other_file = {**branch, "GITHUB_WORKFLOW_REF": "o/r/.github/workflows/other.yml@refs/heads/main"}
    with pytest.raises(UsageError):
        keyless.check_signs_as(other_file, policy)
    keyless.check_signs_as(
        {**branch, "GITHUB_WORKFLOW_REF": "o/r/.github/workflows/ci-images.yml@refs/heads/main"}, policy
    )
    keyless.check_signs_as({}, policy)  # outside Actions: nothing to compare
    keyless.check_signs_as(branch, keyless.reusable_policy("o/r", "o/r"))  # the called file's ref is unknown
