"""Raced tags in what a run leaves: the lock file records what the registry holds (another writer's digest, or no
tag), the signatures this run made of it, the table and the step outputs say so, and the run exits 12."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ci_images.commands.options import Options
from ci_images.commands.outcome import finish
from ci_images.errors import EntriesFailed, TagsRaced
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from ci_images.report.lockfile import update_lock
from ci_images.report.table import digests_output, table_rows
from ci_images.run.context import Context
from ci_images.run.result import RacedTag, Result
from ci_images.sign.signer import SignOutcome

from .test_report import D1, D2, D3, REPO, SRC, result

OTHER_SRC = "sha256:" + "6" * 64


def raced_result() -> Result:
    """Built D1 under three tags; another writer then moved :3.12.0 to D2 and deleted :latest."""
    return replace(
        result(previous={"3.12.0": D3, "3.12": D3, "latest": D3}),
        raced={
            f"{REPO}:3.12.0": RacedTag(
                D2, ("linux/amd64",), "docker.io/nsmithuk/local-kms:3.12.0", OTHER_SRC
            ),
            f"{REPO}:latest": RacedTag(None),
        },
        signature=SignOutcome("key", "sha256:fingerprint", D1, signed=(D1,), verified=(D1,)),
        raced_signatures=(SignOutcome("key", "sha256:fingerprint", D2, signed=(D2,), verified=(D2,)),),
    )


def test_the_lock_file_records_what_the_registry_holds_for_a_raced_tag(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.json"
    lock.write_text(json.dumps({"version": 1, "images": {f"{REPO}:latest": {"digest": D3}}}))
    written = update_lock(lock, [raced_result()])
    images = written["images"]
    assert images[f"{REPO}:3.12"]["digest"] == D1  # moved by this run and still its own
    assert images[f"{REPO}:3.12.0"] == {
        "digest": D2,
        "pinned": f"{REPO}@{D2}",
        "source": "docker.io/nsmithuk/local-kms:3.12.0",
        "source_digest": OTHER_SRC,
        "platforms": ["linux/amd64"],
    }
    assert f"{REPO}:latest" not in images  # deleted by the other writer: the registry has no such tag
    assert set(written["signatures"]) == {D1, D2}  # this run signed what the raced tag holds, too


def test_the_table_the_json_and_the_outputs_say_raced() -> None:
    raced = raced_result()
    (row,) = table_rows([raced])
    assert row[3] == "built, raced"
    assert raced.as_record()["raced"] == {f"{REPO}:3.12.0": D2, f"{REPO}:latest": None}
    assert result().as_record()["raced"] == {}
    assert digests_output([raced]) == {f"{REPO}:3.12.0": D2, f"{REPO}:3.12": D1}


def _context() -> Context:
    def no_engine() -> object:
        raise AssertionError("reporting needs no engine")

    return Context(ClientPool(RegistryClient), ClientPool(RegistryClient), no_engine, {})  # type: ignore[arg-type]


def test_a_raced_run_exits_12_and_a_failure_still_wins() -> None:
    with pytest.raises(TagsRaced) as caught:
        finish([raced_result(), result("3.11.7")], _context(), Options(), title="t")
    assert caught.value.exit_code == 12
    assert f"{REPO}:3.12.0" in caught.value.message and "run again, alone" in caught.value.render()
    failed = replace(result("3.11.7", action="failed"), exit_code=3)
    with pytest.raises(EntriesFailed) as caught_failure:
        finish([raced_result(), failed], _context(), Options(), title="t")
    assert caught_failure.value.exit_code == 8
    finish([result(), replace(result("3.11.7"), digest=SRC)], _context(), Options(), title="t")  # no race: 0
