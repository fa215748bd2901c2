"""verify-images' fix line: what to do follows from what failed."""

from __future__ import annotations

from ci_images.commands.signing import TagCheck, verify_fix


def _check(problem: str) -> TagCheck:
    return TagCheck(
        ref="r.example/app:1",
        digest="sha256:" + "a" * 64,
        locked=None,
        problem=problem,
        message="",
        mode="key",
    )


def test_missing_attestations_say_how_they_are_made() -> None:
    fix = verify_fix([_check("attestation-missing")])
    assert "push-images --force" in fix
    assert "sign-images signs, it does not attest" in fix
    assert "who wrote" not in fix  # there is nothing written to look into


def test_wrong_attestations_ask_who_wrote_them() -> None:
    for problem in ("attestation-wrong-key", "provenance-wrong-base"):
        assert "find out who wrote these .att tags" in verify_fix(
            [_check(problem), _check("attestation-missing")]
        )


def test_moved_tags_come_before_anything_else() -> None:
    assert "who moved these tags" in verify_fix([_check("moved"), _check("attestation-missing")])
