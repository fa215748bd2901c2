"""What a result says about how its digest was made (the lock file's "built"): the plan's way for new work, the
index's own record for a digest left in place."""

from __future__ import annotations

import pytest

from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.recipe import BUILT_LABEL
from ci_images.run.result import Result
from tests.unit.conftest import EntryFactory

HELD = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("mode", "action", "labels", "built"),
    [
        ("build", "build", {}, "assembled"),  # the shipped kind of Dockerfile
        ("build", "skip", {BUILT_LABEL: "assembled"}, "assembled"),
        ("build", "retag", {BUILT_LABEL: "engine"}, "engine"),
        ("build", "skip", {}, "engine"),  # published before the index said so: the engine made it
        ("mirror", "mirror", {}, "mirror"),
        ("mirror", "skip", {}, "mirror"),
    ],
)
def test_built_says_how_the_digest_was_made(
    make_entry: EntryFactory, mode: str, action: str, labels: dict[str, str], built: str
) -> None:
    entry = make_entry(mode=mode)
    decision = Decision(entry, action, "why", "sha256:" + "b" * 64, None, TargetState(HELD, labels=labels))
    result = Result.from_decision(decision)
    assert result.built == built
    assert result.as_record()["built"] == built
