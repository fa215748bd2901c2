"""How signing is configured (options, COSIGN_KEY, COSIGN_PASSWORD, --keyless) and recorded (lock file, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_images.commands.options import PUSH, SIGN, VERIFY, parse_options
from ci_images.errors import UsageError
from ci_images.report import lockfile
from ci_images.report.table import markdown_summary, table_rows
from ci_images.run.result import Result
from ci_images.sign import keyless, keys
from ci_images.sign.choose import configured_signer, configured_verifier, source_repository
from ci_images.sign.signer import KeylessSigner, KeySigner, KeyVerifier, SignOutcome

URL = "https://github.com/getsops/ci-container-images"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return keys.generate_key_files(tmp_path_factory.mktemp("key"), {"COSIGN_PASSWORD": "right"})


def test_cosign_key_comes_from_the_environment_as_cosign_reads_it() -> None:
    options = parse_options(PUSH, {}, {"COSIGN_KEY": "env://MY_PEM"})
    assert options.signing_key == "env://MY_PEM"
    with pytest.raises(UsageError, match="is not env://VARIABLE"):
        parse_options(PUSH, {}, {"COSIGN_KEY": "env://"})
    with pytest.raises(UsageError, match="--signing-key and --keyless cannot be used together"):
        parse_options(SIGN, {"signing_key": "k", "keyless": True}, {})


def test_key_and_keyless_from_the_environment_conflict_too(key_pair: tuple[Path, Path, str]) -> None:
    with pytest.raises(UsageError, match="choose one"):
        configured_signer(str(key_pair[0]), True, {"COSIGN_PASSWORD": "right"}, default_url=URL)


def test_the_key_is_decrypted_before_anything_else(key_pair: tuple[Path, Path, str]) -> None:
    signer = configured_signer(str(key_pair[0]), False, {"COSIGN_PASSWORD": "right"}, default_url=URL)
    assert isinstance(signer, KeySigner) and signer.signer == key_pair[2]
    with pytest.raises(UsageError) as caught:
        configured_signer(str(key_pair[0]), False, {"COSIGN_PASSWORD": "wrong-pw-123"}, default_url=URL)
    assert caught.value.exit_code == 2
    assert "wrong-pw-123" not in caught.value.render()
    assert configured_signer(None, False, {}, default_url=URL) is None


def test_verifier_is_the_public_key_or_cosign(key_pair: tuple[Path, Path, str], tmp_path: Path) -> None:
    verifier = configured_verifier(str(key_pair[1]), {}, default_url=URL)
    assert isinstance(verifier, KeyVerifier) and verifier.signer == key_pair[2]
    with pytest.raises(UsageError, match="no cosign on PATH"):
        configured_verifier(None, {"PATH": str(tmp_path)}, default_url=URL)
    parsed = parse_options(VERIFY, {"key": str(key_pair[1])}, {})
    assert parsed.key == str(key_pair[1])


def test_keyless_identity_is_this_repository_in_actions_else_the_default() -> None:
    assert source_repository({}, URL) == ("https://github.com", "getsops/ci-container-images")
    env = {"GITHUB_REPOSITORY": "me/fork", "GITHUB_SERVER_URL": "https://github.example"}
    assert source_repository(env, URL) == ("https://github.example", "me/fork")


def test_a_reusable_workflow_signs_and_verifies_as_the_repository_of_its_own_file(tmp_path: Path) -> None:
    """Called from someorg/app, build-images.yml's certificate names getsops/ci-container-images' workflow file and
    someorg/app's run: verification pins both."""
    cosign = tmp_path / "cosign"
    cosign.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    cosign.chmod(0o755)
    env = {
        "PATH": str(tmp_path),
        "ACTIONS_ID_TOKEN_REQUEST_URL": "u",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t",
        "GITHUB_REPOSITORY": "someorg/app",
        "GITHUB_WORKFLOW_REF": "someorg/app/.github/workflows/images.yml@refs/heads/main",
        "CI_IMAGES_SIGN_REPOSITORY": "getsops/ci-container-images",
        "CI_IMAGES_SIGN_CALLER": "someorg/app",
    }
    called = configured_signer(None, True, env, default_url=URL)
    assert isinstance(called, KeylessSigner)
    assert called.policy == keyless.reusable_policy("getsops/ci-container-images", "someorg/app")
    assert called.signer == str(called.policy)  # the called file's ref is not in the environment
    own_ref = "getsops/ci-container-images/.github/workflows/ci-images.yml@refs/heads/main"
    own = {
        **{k: v for k, v in env.items() if k != "CI_IMAGES_SIGN_CALLER"},
        "GITHUB_REPOSITORY": "getsops/ci-container-images",
        "GITHUB_WORKFLOW_REF": own_ref,
    }
    in_own_repository = configured_signer(None, True, own, default_url=URL)
    assert isinstance(in_own_repository, KeylessSigner)
    assert in_own_repository.signer == f"https://github.com/{own_ref}"
    assert in_own_repository.policy == keyless.publishing_policy("getsops/ci-container-images")
    without = {k: v for k, v in env.items() if k != "CI_IMAGES_SIGN_REPOSITORY"}
    assert source_repository(without, URL) == ("https://github.com", "someorg/app")


def _result(digest: str, *, action: str = "built", signature: SignOutcome | None = None) -> Result:
    return Result(
        image="vault",
        variant="plain",
        version="2.0.0",
        action=action,
        reason="new",
        tags=("r.test/vault:2.0.0", "r.test/vault:2.0"),
        digest=digest,
        source_digest="sha256:src",
        platforms=("linux/amd64",),
        signature=signature,
    )


def test_lock_records_how_each_digest_is_signed_and_forgets_digests_no_tag_holds(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.json"
    first = SignOutcome("key", "sha256:fp", "sha256:one", ("sha256:one",), ("sha256:one",))
    lockfile.update_lock(lock, [_result("sha256:one", signature=first)])
    recursive = SignOutcome(
        "keyless",
        "https://github.com/o/r/.github/workflows/w.yml@refs/heads/main",
        "sha256:one",
        platforms={"linux/amd64": "sha256:child"},
    )
    lockfile.record_signatures(lock, [recursive])
    written = json.loads(lock.read_text())
    assert written["signatures"]["sha256:one"]["signed_by"] == [
        {"issuer": "https://token.actions.githubusercontent.com", "keyless": recursive.signer},
        {"key": "sha256:fp"},
    ]
    assert written["signatures"]["sha256:child"] == {
        "signed_by": [{"issuer": "https://token.actions.githubusercontent.com", "keyless": recursive.signer}],
        "index": "sha256:one",
    }
    # The tags move on: what they held before is no longer recorded; a failed entry records nothing.
    second = SignOutcome("key", "sha256:fp", "sha256:two", ("sha256:two",), ("sha256:two",))
    lockfile.update_lock(lock, [_result("sha256:two", signature=second)])
    assert list(json.loads(lock.read_text())["signatures"]) == ["sha256:two"]
    failed = SignOutcome("key", "sha256:fp", "sha256:three")
    lockfile.update_lock(lock, [_result("sha256:three", action="failed", signature=failed)])
    assert list(json.loads(lock.read_text())["signatures"]) == ["sha256:two"]


def test_report_shows_signing_only_when_the_run_signed() -> None:
    plain = _result("sha256:" + "1" * 64)
    assert len(table_rows([plain])[0]) == 7
    assert "signed" not in markdown_summary([plain], title="t", ratelimit_remaining=None)
    new = _result("sha256:" + "1" * 64, signature=SignOutcome("key", "fp", "d", ("d",), ("d",)))
    old = _result("sha256:" + "1" * 64, signature=SignOutcome("key", "fp", "d", (), ("d",)))
    assert [row[-1] for row in table_rows([new, old, plain])] == ["new", "yes", "-"]
    assert "| signed |" in markdown_summary([new], title="t", ratelimit_remaining=None)
    assert new.as_record()["signature"]["signed"] == ["d"]
    assert plain.as_record()["signature"] is None
