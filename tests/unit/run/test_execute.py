"""The executor's bookkeeping without an engine: skips, the rate-limit stop, fail-fast and result order."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from ci_images.catalog.load import load_catalog
from ci_images.commands import outcome
from ci_images.commands.options import PUSH, parse_options
from ci_images.commands.outcome import finish
from ci_images.errors import EntriesFailed, RateLimitError
from ci_images.log import Logger
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.entries import expand
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.run.context import Context
from ci_images.run.execute import execute
from ci_images.run.result import Result
from ci_images.run.settings import RunSettings
from ci_images.smoke import KINDS

REPO_ROOT = Path(__file__).resolve().parents[3]


def _context(budget: RateBudget | None = None) -> Context:
    def no_engine() -> object:
        raise AssertionError("a skip must not touch the engine")

    return Context(
        upstream_pool=ClientPool(RegistryClient),
        target_pool=ClientPool(RegistryClient),
        engine_factory=no_engine,  # type: ignore[arg-type]
        env={},
        budget=budget or RateBudget(),
    )


def _decisions(action: str) -> list[Decision]:
    entries = expand(
        load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS), registry="registry.example/ci"
    )
    state = TargetState(digest="sha256:" + "a" * 64)
    return [
        Decision(e, action, "up to date", "sha256:" + "b" * 64, "sha256:" + "c" * 64, state) for e in entries
    ]


def test_skips_touch_nothing_and_keep_catalog_order() -> None:
    decisions = _decisions("skip")
    results = execute(_context(), decisions, RunSettings(jobs=4), None)
    assert [r.key for r in results] == [d.entry.key for d in decisions]
    assert {r.action for r in results} == {"skipped"}
    assert all(r.digest == "sha256:" + "a" * 64 for r in results)


def test_builds_are_not_started_when_the_pull_quota_is_below_the_threshold() -> None:
    budget = RateBudget(min_remaining=10)
    budget.observe(remaining=3, limit=100)
    results = execute(_context(budget), _decisions("build"), RunSettings(jobs=2), None)
    assert {r.action for r in results} == {"failed"}
    assert all(r.reason.startswith("upstream pull quota nearly used up") for r in results)
    assert all(r.ratelimit_remaining == 3 for r in results)


def test_fail_fast_stops_starting_entries() -> None:
    budget = RateBudget(min_remaining=10)
    budget.observe(remaining=0, limit=100)
    results = execute(_context(budget), _decisions("build"), RunSettings(jobs=1, fail_fast=True), None)
    assert results[0].reason.startswith("upstream pull quota")
    assert all("--fail-fast" in r.reason for r in results[1:])


def test_an_entry_that_was_up_to_date_stays_skipped_when_the_run_stops_early() -> None:
    """--fail-fast (or an interrupt) stops the builds that were not started; what needed nothing is still skipped."""
    budget = RateBudget(min_remaining=10)
    budget.observe(remaining=0, limit=100)
    builds, skips = _decisions("build"), _decisions("skip")
    mixed = [builds[0], skips[1], builds[2], skips[3]]
    results = execute(_context(budget), mixed, RunSettings(jobs=1, fail_fast=True), None)
    assert [r.action for r in results] == ["failed", "skipped", "failed", "skipped"]
    assert "--fail-fast" in results[2].reason and results[1].reason == "up to date"


def test_rate_budget_spends_and_refuses() -> None:
    budget = RateBudget(min_remaining=5)
    budget.check("nothing known yet")  # no header seen: no limit applies
    budget.observe(remaining=8, limit=100)
    budget.observe(remaining=9, limit=100)  # the lowest answer wins
    assert budget.remaining == 8
    budget.spend(3, what="entry")
    assert budget.remaining == 5
    budget.spend(1, what="entry")
    with pytest.raises(RateLimitError) as raised:
        budget.spend(1, what="next entry")
    assert raised.value.exit_code == 4
    assert "next entry not started" in raised.value.message


def _results(*outcomes: tuple[str, int | None]) -> list[Result]:
    base = Result.from_decision(_decisions("build")[0])
    return [
        replace(base, version=f"1.{i}.0", action=action, exit_code=code)
        for i, (action, code) in enumerate(outcomes)
    ]


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ((("failed", 4), ("failed", 4)), 4),  # every entry hit the rate limit: the rate-limit code
        ((("failed", 3),), 3),
        ((("failed", 4), ("failed", None)), 4),  # the second was not started (--fail-fast)
        ((("failed", 4), ("built", None)), 8),  # one went through: "some entries failed"
        ((("failed", 4), ("failed", 7)), 8),  # different causes
    ],
)
def test_the_exit_code_comes_from_the_errors_not_their_text(
    outcomes: tuple[tuple[str, int | None], ...], expected: int
) -> None:
    with pytest.raises(EntriesFailed) as raised:
        finish(_results(*outcomes), _context(), parse_options(PUSH, {}, {}), title="t")
    assert raised.value.exit_code == expected


def test_a_run_without_failures_reports_every_entry_and_raises_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(outcome, "log", Logger(stream=stream, env={"CI": "true"}))
    finish(_results(("built", None), ("skipped", None)), _context(), parse_options(PUSH, {}, {}), title="t")
    rows = [line.split() for line in stream.getvalue().splitlines()[1:]]
    assert [(row[2], row[3]) for row in rows] == [("1.0.0", "built"), ("1.1.0", "skipped")]
