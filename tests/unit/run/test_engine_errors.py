"""An engine error in one entry fails that entry, with the engine's exit code, and not the run: the other entries go
through and the run still ends with its report and lock file (here, through execute and the lock file's writer)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ci_images.catalog.load import load_catalog
from ci_images.errors import EngineError
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.entries import Entry, expand
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from ci_images.report.lockfile import update_lock
from ci_images.run.context import Context
from ci_images.run.execute import execute
from ci_images.run.publish import DryRunPublisher, PreviousDigests
from ci_images.run.settings import RunSettings
from ci_images.smoke import KINDS

REPO_ROOT = Path(__file__).resolve().parents[3]
HELD = "sha256:" + "a" * 64


class ExportFails(DryRunPublisher):
    """Retags like a registry would, except for one entry, whose image the engine no longer has."""

    def __init__(self, failing: str) -> None:
        self.failing = failing

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        if entry.key == self.failing:
            raise EngineError(
                "the engine refused to export sha256:0000: no such image",
                fix="another run removed it: run again",
            )
        return dict.fromkeys(entry.tags)


def test_an_engine_error_fails_its_entry_and_the_run_still_records_the_others(tmp_path: Path) -> None:
    entries = expand(
        load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS), registry="registry.example/ci"
    )
    decisions = [Decision(e, "retag", "alias moved", None, None, TargetState(HELD)) for e in entries[:3]]
    ctx = Context(ClientPool(RegistryClient), ClientPool(RegistryClient), lambda: None, {})  # type: ignore[arg-type, return-value]
    results = execute(ctx, decisions, RunSettings(jobs=2, publish=True), ExportFails(entries[1].key))
    assert [r.action for r in results] == ["retagged", "failed", "retagged"]
    assert results[1].exit_code == 5 and "no such image" in (results[1].error or "")
    lock = update_lock(tmp_path / "images.lock.json", results)
    assert set(lock["images"]) == set(entries[0].tag_refs) | set(entries[2].tag_refs)
