"""Whether a run has ended, as the reaper judges it: from /proc on this host (a /proc of files in a temp dir, and this
machine's own), from the age bound elsewhere; and the names that say which run an image belongs to."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ci_images.engine.client import CACHE_GONE
from ci_images.engine.runs import (
    RUN_TAG,
    Reaped,
    RunIdentity,
    ended,
    process_identity,
    run_tag,
    temporary_refs,
    this_run,
)

DAY = 24 * 3600.0
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
BOOT = "0e9c3a52-44a5-4c3f-8d1e-2b1bfbb3c1d4"


def _proc(root: Path, pid: int, *, ticks: str, state: str = "S", namespace: str = "4026531836") -> Path:
    """A /proc with one process ``pid`` (its stat and PID namespace) and the boot id."""
    (root / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    (root / "sys" / "kernel" / "random" / "boot_id").write_text(BOOT + "\n")
    folder = root / str(pid)
    (folder / "ns").mkdir(parents=True, exist_ok=True)
    fields = [state, "1", "1", "1", "0", "-1", "0", *(["0"] * 12), ticks, "0"]
    (folder / "stat").write_text(f"{pid} (python3 -m ci (x)) {' '.join(fields)}\n")
    link = folder / "ns" / "pid"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(f"pid:[{namespace}]")
    return root


def _run(pid: int, process: str, *, host: str = "runner-1", age_s: float = 60) -> RunIdentity:
    started = (NOW - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RunIdentity("a1b2c3d4e5f6", host, pid, process, started)


def _me(proc: Path, pid: int) -> RunIdentity:
    return RunIdentity("ffffffffffff", "runner-1", pid, process_identity(pid, proc), NOW.isoformat())


def test_the_identity_of_a_process_names_its_boot_namespace_and_start(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 42, ticks="123456")
    assert process_identity(42, proc) == f"{BOOT}:4026531836:123456"
    assert process_identity(43, proc) == ""  # no such process
    assert process_identity(42, tmp_path / "nothing") == ""


def test_a_run_whose_process_is_running_has_not_ended(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 42, ticks="1000")
    _proc(proc, 7, ticks="500")
    run = _run(42, process_identity(42, proc), age_s=3 * DAY)  # old, but alive here: left alone
    assert ended(run, _me(proc, 7), max_age_s=DAY, now=NOW.timestamp(), proc=proc) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("gone", "process gone"),  # no /proc/PID
        ("reused", "process gone"),  # the PID is another process's now: another start time
        ("zombie", "process gone"),  # killed, not yet waited for
    ],
)
def test_a_run_whose_process_is_gone_has_ended(tmp_path: Path, change: str, why: str) -> None:
    proc = _proc(tmp_path, 42, ticks="1000")
    _proc(proc, 7, ticks="500")
    run = _run(42, process_identity(42, proc))
    if change == "gone":
        (proc / "42" / "stat").unlink()
    else:
        _proc(
            proc, 42, ticks="2000" if change == "reused" else "1000", state="Z" if change == "zombie" else "S"
        )
    assert ended(run, _me(proc, 7), max_age_s=DAY, now=NOW.timestamp(), proc=proc) == why


def test_a_run_this_host_cannot_see_ends_with_the_bound(tmp_path: Path) -> None:
    proc = _proc(tmp_path, 7, ticks="500")
    me = _me(proc, 7)
    elsewhere = _run(42, f"{BOOT}:4026531836:1000", host="laptop")
    other_namespace = _run(42, f"{BOOT}:4026532999:1000")  # a container sharing the host name
    other_boot = _run(42, "11111111-2222-3333-4444-555555555555:4026531836:1000")
    for run in (elsewhere, other_namespace, other_boot):
        assert ended(run, me, max_age_s=DAY, now=NOW.timestamp(), proc=proc) is None
        old = replace(run, started=(NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert ended(old, me, max_age_s=DAY, now=NOW.timestamp(), proc=proc) == "older than 24 h"


def test_this_run_never_ends_for_itself() -> None:
    me = this_run()
    assert me is this_run()  # one per process
    assert me.pid == os.getpid()
    assert ended(me, me, max_age_s=0, now=NOW.timestamp() + 10 * DAY) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads this machine's /proc")
def test_a_real_process_that_exited_has_ended() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run = replace(this_run(), id="0123456789ab", pid=child.pid, process=process_identity(child.pid))
        assert run.process and run.process.split(":")[:2] == this_run().process.split(":")[:2]
        assert ended(run, this_run(), max_age_s=DAY, now=NOW.timestamp()) is None
        child.kill()
        child.wait()
        assert ended(run, this_run(), max_age_s=DAY, now=NOW.timestamp()) == "process gone"
    finally:
        child.kill()
        child.wait()


def test_labels_round_trip_and_name_the_run() -> None:
    run = _run(42, f"{BOOT}:4026531836:1000")
    labels = run.labels()
    assert labels["io.github.getsops.ci-images.run"] == run.id
    assert labels["io.github.getsops.ci-images.run.pid"] == "42"
    assert RunIdentity.from_labels(labels) == run
    assert RunIdentity.from_labels({"io.github.getsops.ci-images.smoke": "x"}) is None
    assert run.marker == f"ci-images-run-{run.id}"


def test_run_tags_are_told_apart_from_the_names_build_images_leaves() -> None:
    ref = run_tag("ci-images/vault:2.0.0-linux-amd64", "a1b2c3d4e5f6")
    assert ref == "ci-images/vault:2.0.0-linux-amd64.run-a1b2c3d4e5f6"
    assert RUN_TAG.fullmatch(ref)
    images: list[dict[str, list[str] | None]] = [  # as the engine lists them
        {"RepoTags": [ref, "ci-images/vault:2.0.0-linux-amd64", "127.0.0.1:5000/x/vault:2.0.0"]},
        {"RepoTags": ["ci-images/local-kms:3.11.1-seeded-linux-arm64-v8.run-00000000abcd"]},
        {"RepoTags": ["other/vault:2.0.0.run-a1b2c3d4e5f6"]},  # not ours: another repository
        {"RepoTags": None},  # dangling
    ]
    assert temporary_refs(images) == [
        "ci-images/local-kms:3.11.1-seeded-linux-arm64-v8.run-00000000abcd",
        ref,
    ]


def test_what_was_reaped_is_said_by_name() -> None:
    reaped = Reaped(
        _run(42, ""),
        "process gone",
        containers=["ci-images-smoke-0a0b"],
        images=["ci-images/vault:2.0.0-linux-amd64.run-a1b2c3d4e5f6"],
        left=["ci-images/vault:2.0-linux-amd64.run-a1b2c3d4e5f6"],
    )
    text = reaped.describe()
    assert "run a1b2c3d4e5f6 (pid 42 on runner-1" in text
    assert "ci-images-smoke-0a0b" in text and "2.0.0-linux-amd64.run-a1b2c3d4e5f6" in text
    assert "a container of a running run uses it" in text
    record = reaped.as_record()
    assert record["pid"] == 42 and record["why"] == "process gone"
    assert record["left_in_use"] == ["ci-images/vault:2.0-linux-amd64.run-a1b2c3d4e5f6"]


def test_a_build_whose_cached_step_another_run_removed_is_told_apart_from_a_failing_build() -> None:
    """The engine's words when a step image taken from the cache was removed before use (Engine.build builds again)."""
    gone = (
        "  | ERROR: failed to get digest sha256:0e6ac4be10085aa: open /var/lib/docker/image/overlay2/imagedb/"
        "content/sha256/0e6ac4be10085aa: no such file or directory"
    )
    assert CACHE_GONE.search(gone)
    assert CACHE_GONE.search("  | ERROR: No such image: sha256:4af1dbc58f67")
    assert not CACHE_GONE.search("  | ERROR: The command '/bin/sh -c false' returned a non-zero code: 1")
