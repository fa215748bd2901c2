"""The pipeline: run the plan's decisions, in parallel, each entry on its own.

Order of events for an entry that needs work: resolve the upstream index to per-platform digests, build every
platform FROM its own digest, smoke-test every platform the host can run, upload every platform by digest, and only
then write the index under the entry's tags. A mirror entry copies upstream's image into the target by digest
instead, and smoke-tests that copy (run/mirror.py). A failure anywhere before the last step leaves every tag as it
was.

With a signer, the digest the entry's tags point to is signed right after (unless this key already signed it) and
the signature read back and verified; only ``.sig`` tags are written then. A signing failure fails the entry (exit
9) with its tags already moved: the report and the lock file say so, and the lock keeps the previous record. What
the entry published is then attested (``run/attestations.py``: provenance and SBOMs, on a pool of their own).

An interrupt (SIGINT, SIGTERM) stops the run: no entry starts, running ones stop at their next step and move no
further tag, the containers the run started are removed, and the run ends with a one-line summary of what was done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import TYPE_CHECKING

from ci_images.errors import CiImagesError, Interrupted, PlanError, TagsPartlyMoved
from ci_images.log import log
from ci_images.plan.decide import Decision
from ci_images.run.build import build_entry, local_images, release_builds, smoke_entry
from ci_images.run.context import Context
from ci_images.run.mirror import mirror_entry
from ci_images.run.publish import Publisher
from ci_images.run.races import read_back, sign_raced
from ci_images.run.result import HELD_ACTIONS, Result
from ci_images.run.settings import RunSettings

if TYPE_CHECKING:
    from ci_images.run.attestations import AttestationStep
    from ci_images.sign.signer import Signer

# How long an interrupted run waits for its running entries to reach their next step before it gives up on them.
INTERRUPT_GRACE_S = 60.0


def execute(
    ctx: Context,
    decisions: Sequence[Decision],
    settings: RunSettings,
    publisher: Publisher | None,
    signer: Signer | None = None,
) -> list[Result]:
    """Run every decision; one entry failing does not stop the others unless ``fail_fast``.

    When interrupted, the results so far are returned and the interrupt is kept in ``ctx.interrupted`` for the
    caller to raise once it has recorded them (lock file, report).
    """
    results: dict[int, Result] = {}
    worker = _Worker(ctx, settings, publisher, signer, _attestations(ctx, settings, signer))
    with (
        log.progress(len(decisions), "images") as advance,
        ThreadPoolExecutor(max_workers=max(1, settings.jobs), thread_name_prefix="entry") as pool,
    ):
        pending: dict[Future[Result], int] = {pool.submit(worker.run, d): i for i, d in enumerate(decisions)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
                    advance()
        except KeyboardInterrupt as exc:
            _stop(ctx, worker.stop, pending, results)
            ctx.interrupted = exc if isinstance(exc, Interrupted) else Interrupted(2)
    ordered = [results.get(i) or _not_started(d, "interrupted") for i, d in enumerate(decisions)]
    if worker.attestations is not None:
        ordered = worker.attestations.finish(ordered)
    if ctx.interrupted is not None:
        ctx.interrupted.summary = interrupted_summary(ordered)
    return ordered


def _attestations(ctx: Context, settings: RunSettings, signer: Signer | None) -> AttestationStep | None:
    """The attestation step of a run that signs: its modules load only then."""
    if signer is None:
        return None
    from ci_images.run.attestations import attestation_step

    return attestation_step(ctx, settings, signer)


class _Worker:
    """Runs one entry at a time on a worker thread: its steps, then its signature; a failure becomes its result."""

    def __init__(
        self,
        ctx: Context,
        settings: RunSettings,
        publisher: Publisher | None,
        signer: Signer | None,
        attestations: AttestationStep | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.publisher = publisher
        self.signer = signer
        self.attestations = attestations
        self.stop = (
            threading.Event()
        )  # no further entry starts (an interrupt, or --fail-fast after a failure)

    def run(self, decision: Decision) -> Result:
        ctx = self.ctx
        started = time.monotonic()
        base = Result.from_decision(decision, ratelimit_remaining=ctx.budget.remaining)
        if self.stop.is_set():
            why = "interrupted" if ctx.cancel.is_set() else "an earlier entry failed (--fail-fast)"
            return _not_started(decision, why, base)
        with log.group(f"{decision.entry.key}: {decision.action} ({decision.reason})"):
            published = base
            try:
                published = _run_one(ctx, decision, self.settings, self.publisher, base)
                published = read_back(self.publisher, decision, published)
                result = _sign_one(ctx, decision, self.settings, self.signer, published)
                result = sign_raced(
                    ctx, self.signer, decision, result, recursive=self.settings.sign_recursive
                )
                if self.attestations is not None:
                    self.attestations.start(decision, result)
            except CiImagesError as exc:
                # `published`: a signing failure comes after the tags moved, and the report must say where to.
                result = self._failed(decision, published, exc)
        return replace(
            result, duration_s=round(time.monotonic() - started, 2), ratelimit_remaining=ctx.budget.remaining
        )

    def _failed(self, decision: Decision, published: Result, exc: CiImagesError) -> Result:
        key = decision.entry.key
        interrupted = self.ctx.cancel.is_set()
        if interrupted:  # what the interrupt broke (a removed container...) is not news
            log.warning(f"{key}: stopped by the interrupt ({exc.message.splitlines()[0][:200]})")
        else:
            log.error(f"{key}: {exc.render()}", title=f"{key} failed")
        if self.settings.fail_fast:
            self.stop.set()
        result = replace(
            published,
            action="failed",
            reason=("interrupted: " if interrupted else "") + exc.message.splitlines()[0][:300],
            error=exc.render(),
            exit_code=exc.exit_code,
        )
        if isinstance(exc, TagsPartlyMoved):
            result = replace(result, tags_moved=exc.moved, tags_not_moved=exc.not_moved)
        return result


def _stop(
    ctx: Context, stop: threading.Event, pending: dict[Future[Result], int], results: dict[int, Result]
) -> None:
    """Stop everything: no new entry, no further tag; remove the run's containers so smoke probes end at once."""
    ctx.cancel.set()
    stop.set()
    for future in pending:
        future.cancel()
    engine = ctx.engine_if_connected
    if engine is not None:
        removed = engine.remove_run_containers()
        if removed:
            log.info(f"removed {removed} container(s) this run started")
    running = [f for f in pending if not f.cancelled()]
    done, _ = wait(running, timeout=INTERRUPT_GRACE_S)
    for future in done:
        if future.exception() is None:
            results[pending[future]] = future.result()


def _not_started(decision: Decision, why: str, base: Result | None = None) -> Result:
    """An entry the run stopped before: failed, unless it had nothing to do (up to date: still skipped)."""
    base = base or Result.from_decision(decision)
    if decision.action == "skip":
        return replace(base, action="skipped")
    return replace(base, action="failed", reason=f"not started: {why}")


def interrupted_summary(results: Sequence[Result]) -> str:
    """One line: what an interrupted run did and did not do."""
    done = [r for r in results if r.action in HELD_ACTIONS | {"tested"}]
    partly = [r for r in results if r.tags_moved]
    stopped = [
        r for r in results if r.action == "failed" and r.reason.startswith("interrupted") and not r.tags_moved
    ]
    waiting = [r for r in results if r.reason == "not started: interrupted"]
    parts = [f"{len(done)} of {len(results)} entries done"]
    if partly:
        parts.append(
            f"{len(partly)} moved only some tags ({', '.join(r.key for r in partly)}; the next run finishes them)"
        )
    if stopped:
        parts.append(f"{len(stopped)} stopped before their tags moved ({', '.join(r.key for r in stopped)})")
    if waiting:
        parts.append(f"{len(waiting)} not started")
    return "; ".join(parts)


def _run_one(
    ctx: Context, decision: Decision, settings: RunSettings, publisher: Publisher | None, base: Result
) -> Result:
    entry = decision.entry
    if decision.action == "error":
        raise PlanError(decision.reason, exit_code=decision.error_code)
    if decision.action == "skip":
        log.info(f"{entry.key}: up to date ({base.digest})")
        return replace(base, action="skipped")
    if decision.action == "retag":
        assert publisher is not None and decision.current.digest is not None
        moved = publisher.retag(entry, decision.current.digest, decision.current.tag_digests)
        return replace(base, action="retagged", digest=decision.current.digest, previous_digests=moved)
    ctx.budget.check(entry.key)
    ctx.check_cancelled(f"{entry.key} started")
    if decision.action == "mirror":
        return mirror_entry(ctx, decision, publisher if settings.publish else None, base)
    if decision.action == "test":
        built = smoke_entry(ctx, entry, local_images(ctx, entry))
        return replace(base, action="tested", smoked=built.smoked)
    if entry.how_built.assembled:
        from ci_images.run.assemble import (
            engine_fallback,
            run_assembled,
        )  # loads only where an entry is assembled

        done = run_assembled(ctx, decision, settings, publisher, base)
        if isinstance(done, Result):
            return done
        base = engine_fallback(base, done)
    built = build_entry(
        ctx,
        decision,
        revision=settings.revision,
        created=settings.created,
        source_url=settings.source_url,
        smoke=settings.smoke,
        keep=not settings.publish or settings.keep_images,
    )
    try:
        if not settings.publish or publisher is None:
            return replace(base, action="built", smoked=built.smoked)
        digest, previous = publisher.publish(entry, decision, built.images, built.bases)
    finally:
        release_builds(ctx, entry, built.refs)  # what build-images or --keep-images named stays
    return replace(base, action="built", digest=digest, previous_digests=previous, smoked=built.smoked)


def _sign_one(
    ctx: Context, decision: Decision, settings: RunSettings, signer: Signer | None, result: Result
) -> Result:
    """Sign (when not signed by this signer yet) and verify the digest the entry's tags point to now."""
    if signer is None or result.action not in HELD_ACTIONS or not result.digest:
        return result
    entry = decision.entry
    client = ctx.target_pool.get(entry.target.api_host)
    outcome = signer.sign(client, entry.target, result.digest, recursive=settings.sign_recursive)
    how = "signed" if outcome.signed else "already signed"
    log.info(f"{entry.key}: {how} and verified ({outcome.mode}: {outcome.signer})")
    return replace(result, signature=outcome)
