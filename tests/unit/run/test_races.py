"""Reading tags back after moving them: a tag another writer moved is raced (with what it holds now), a dry run reads
nothing, and what raced tags hold is signed once per digest by this run's signer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ci_images.catalog.load import load_catalog
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.entries import Entry, expand
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from ci_images.run.context import Context
from ci_images.run.publish import DryRunPublisher
from ci_images.run.races import read_back, sign_raced
from ci_images.run.result import RacedTag, Result
from ci_images.sign.signer import SignOutcome
from ci_images.smoke import KINDS

REPO_ROOT = Path(__file__).resolve().parents[3]
OURS, THEIRS = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _decision() -> Decision:
    entries = expand(
        load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS), registry="registry.example/ci"
    )
    entry = next(e for e in entries if len(e.tags) >= 3)  # a version tag and two aliases
    return Decision(entry, "build", "new", None, None, TargetState(None))


def _built(decision: Decision) -> Result:
    base = Result.from_decision(decision)
    return replace(base, action="built", digest=OURS, previous_digests=dict.fromkeys(decision.entry.tags))


@dataclass
class Registry:
    """What the target's tags hold when the run reads them back."""

    held: dict[str, str | None]
    asked: list[str] = field(default_factory=list)

    def read_back(self, entry: Entry, digest: str, tags: Sequence[str]) -> dict[str, RacedTag]:
        self.asked.extend(tags)
        return {
            entry.target.with_tag(t): RacedTag(self.held[t])
            for t in tags
            if self.held.get(t, digest) != digest
        }


def test_tags_that_still_hold_this_runs_digest_are_not_raced() -> None:
    decision = _decision()
    built = _built(decision)
    registry = Registry({})
    assert read_back(registry, decision, built) == built  # type: ignore[arg-type]
    assert registry.asked == list(decision.entry.tags)


def test_a_tag_another_writer_moved_is_raced_and_said() -> None:
    decision = _decision()
    version = decision.entry.tags[0]
    got = read_back(Registry({version: THEIRS}), decision, _built(decision))  # type: ignore[arg-type]
    ref = decision.entry.target.with_tag(version)
    assert got.raced == {ref: RacedTag(THEIRS)}
    assert f"raced: {ref} now holds" in got.reason


def test_nothing_is_read_back_for_what_did_not_move() -> None:
    decision = _decision()
    registry = Registry({decision.entry.tags[0]: THEIRS})
    skipped = replace(_built(decision), action="skipped")
    assert read_back(registry, decision, skipped) == skipped  # type: ignore[arg-type]
    assert read_back(None, decision, _built(decision)).raced == {}
    assert read_back(DryRunPublisher(), decision, _built(decision)).raced == {}
    assert registry.asked == []


@dataclass
class Signer:
    mode: str = "key"
    signer: str = "sha256:fingerprint"
    signed: list[str] = field(default_factory=list)

    def sign(self, client: Any, repository: Any, digest: str, *, recursive: bool = False) -> SignOutcome:
        self.signed.append(digest)
        return SignOutcome(self.mode, self.signer, digest, signed=(digest,), verified=(digest,))


def test_what_raced_tags_hold_is_signed_once_per_digest() -> None:
    decision = _decision()
    tags = [decision.entry.target.with_tag(t) for t in decision.entry.tags]
    raced: Mapping[str, RacedTag] = {
        tags[0]: RacedTag(THEIRS),
        tags[1]: RacedTag(THEIRS),
        tags[2]: RacedTag(None),
    }
    built = replace(_built(decision), raced=raced)
    ctx = Context(ClientPool(RegistryClient), ClientPool(RegistryClient), lambda: None, {})  # type: ignore[arg-type, return-value]
    signer = Signer()
    signed = sign_raced(ctx, signer, decision, built, recursive=False)  # type: ignore[arg-type]
    assert signer.signed == [THEIRS]
    assert [o.digest for o in signed.raced_signatures] == [THEIRS]
    assert sign_raced(ctx, None, decision, built, recursive=False) == built
