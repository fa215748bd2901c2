"""Tags another writer moved while this run moved them (raced): read back after the moves, reported, recorded in the
lock file as what the registry holds, and signed by this run's signer when their writer left them unsigned.

A registry takes a tag's PUT from anyone, last writer wins, with no compare-and-swap. Two publishers of one target
at once (a manual run beside CI, two machines) interleave their tag moves, and each would otherwise record its own
digests for tags the other moved after it. Reading every moved tag back once they have all moved finds the moves
that came in between; a move after the read-back is the other writer's to find, in its own read-back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ci_images.log import log
from ci_images.oci import short_digest
from ci_images.plan.decide import Decision
from ci_images.run.context import Context
from ci_images.run.publish import Publisher
from ci_images.run.result import CHANGING_ACTIONS, Result

if TYPE_CHECKING:
    from ci_images.sign.signer import Signer


def read_back(publisher: Publisher | None, decision: Decision, result: Result) -> Result:
    """``result`` with the tags it moved that hold another digest now (none in a dry run: nothing moved)."""
    if publisher is None or result.action not in CHANGING_ACTIONS or not result.digest:
        return result
    moved = list(result.previous_digests)  # the tags this run moved
    raced = publisher.read_back(decision.entry, result.digest, moved) if moved else {}
    if not raced:
        return result
    said = ", ".join(
        f"{tag} now holds {short_digest(held.digest) if held.digest else 'nothing'}"
        for tag, held in raced.items()
    )
    log.warning(
        f"{decision.entry.key}: raced: another writer moved tags this run had just moved ({said}); the lock file "
        "records what the registry holds"
    )
    return replace(result, raced=raced, reason=f"{result.reason}; raced: {said}")


def sign_raced(
    ctx: Context, signer: Signer | None, decision: Decision, result: Result, *, recursive: bool
) -> Result:
    """Sign (and verify) what the raced tags hold, when this run signs and its signer has not signed it yet: no tag
    this run moved is left pointing at a digest nobody signed."""
    digests = sorted(
        {held.digest for held in result.raced.values() if held.digest and held.digest != result.digest}
    )
    if signer is None or not digests:
        return result
    entry = decision.entry
    client = ctx.target_pool.get(entry.target.api_host)
    outcomes = []
    for digest in digests:
        outcome = signer.sign(client, entry.target, digest, recursive=recursive)
        how = "signed" if outcome.signed else "already signed"
        log.info(
            f"{entry.key}: {how} what a raced tag holds, {entry.target.with_digest(digest)}, and verified"
        )
        outcomes.append(outcome)
    return replace(result, raced_signatures=tuple(outcomes))
