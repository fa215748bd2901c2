"""The pipeline: resolve the plan against the registries, then build, smoke-test and publish it.

Order of events for an entry that needs work: resolve the upstream index to per-platform digests, build every
platform FROM its own digest, smoke-test every platform the host can run, upload every platform by digest, and only
then write the index under the entry's tags. A mirror entry copies upstream's image into the target by digest
instead, and smoke-tests that copy (run/mirror.py). A failure anywhere before the last step leaves every tag as it
was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from ci_images.errors import CiImagesError, PlanError
from ci_images.log import log
from ci_images.plan.decide import Decision
from ci_images.run.build import build_entry, local_images, smoke_entry
from ci_images.run.context import Context
from ci_images.run.mirror import mirror_entry
from ci_images.run.publish import Publisher
from ci_images.run.report import Result
from ci_images.run.settings import RunSettings


def execute(
    ctx: Context, decisions: Sequence[Decision], settings: RunSettings, publisher: Publisher | None
) -> list[Result]:
    """Run every decision; one entry failing does not stop the others unless ``fail_fast``."""
    results: dict[int, Result] = {}
    stop = threading.Event()

    def one(index: int, decision: Decision) -> Result:
        started = time.monotonic()
        entry = decision.entry
        base = Result.from_decision(decision, ratelimit_remaining=ctx.budget.remaining)
        if stop.is_set():
            return replace(base, action="failed", reason="not started: an earlier entry failed (--fail-fast)")
        with log.group(f"{entry.key}: {decision.action} ({decision.reason})"):
            try:
                result = _run_one(ctx, decision, settings, publisher, base)
            except CiImagesError as exc:
                log.error(f"{entry.key}: {exc.render()}", title=f"{entry.key} failed")
                if settings.fail_fast:
                    stop.set()
                result = replace(
                    base,
                    action="failed",
                    reason=exc.message.splitlines()[0][:300],
                    error=exc.render(),
                    exit_code=exc.exit_code,
                )
        return replace(
            result, duration_s=round(time.monotonic() - started, 2), ratelimit_remaining=ctx.budget.remaining
        )

    with (
        log.progress(len(decisions), "images") as advance,
        ThreadPoolExecutor(max_workers=max(1, settings.jobs), thread_name_prefix="entry") as pool,
    ):
        pending: dict[Future[Result], int] = {pool.submit(one, i, d): i for i, d in enumerate(decisions)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
                    advance()
        except KeyboardInterrupt:
            stop.set()
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(decisions))]


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
    if decision.action == "mirror":
        return mirror_entry(ctx, decision, publisher if settings.publish else None, base)
    if decision.action == "test":
        built = smoke_entry(ctx, entry, local_images(ctx, entry))
        return replace(base, action="tested", smoked=built.smoked)
    built = build_entry(
        ctx,
        decision,
        revision=settings.revision,
        created=settings.created,
        source_url=settings.source_url,
        smoke=settings.smoke,
    )
    if not settings.publish or publisher is None:
        return replace(base, action="built", smoked=built.smoked)
    digest, previous = publisher.publish(entry, decision, built.images, built.bases)
    return replace(base, action="built", digest=digest, previous_digests=previous, smoked=built.smoked)
