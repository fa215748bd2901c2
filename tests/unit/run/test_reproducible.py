"""The time and revision an assembled image records: SOURCE_DATE_EPOCH, else the build folder's last commit, else a
fixed time; never the clock, the checkout's file times or HEAD; a shallow clone that lacks the commit is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ci_images.errors import UsageError
from ci_images.run.reproducible import FIXED_EPOCH, UNKNOWN_REVISION, SourceTime, source_time

FOLDER_TIME = 1_700_000_000
LATER = FOLDER_TIME + 3600


def git(folder: Path, *args: str, when: int = FOLDER_TIME) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_AUTHOR_DATE": f"@{when} +0000",
        "GIT_COMMITTER_DATE": f"@{when} +0000",
    }
    done = subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A repository whose build folder was last changed at FOLDER_TIME, and HEAD an hour later elsewhere."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "commit", "-q", "--allow-empty", "-m", "start", when=FOLDER_TIME - 3600)
    (root / "images" / "app").mkdir(parents=True)
    (root / "images" / "app" / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "app")
    (root / "README").write_text("later\n", encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "elsewhere", when=LATER)
    return root


def test_the_build_folders_last_commit_gives_time_and_revision(repository: Path) -> None:
    folder_commit = git(repository, "log", "-1", "--format=%H", "--", "images/app")
    assert folder_commit != git(repository, "rev-parse", "HEAD")
    got = source_time(repository / "images" / "app", {})
    assert got == SourceTime(FOLDER_TIME, folder_commit, "git")


def test_file_times_do_not_count(repository: Path) -> None:
    folder = repository / "images" / "app"
    before = source_time(folder, {})
    os.utime(folder / "Dockerfile", (LATER * 2, LATER * 2))
    assert source_time(folder, {}) == before


def test_source_date_epoch_wins_and_the_revision_stays_the_folders(repository: Path) -> None:
    got = source_time(repository / "images" / "app", {"SOURCE_DATE_EPOCH": "1234"})
    assert (got.epoch, got.origin) == (1234, "SOURCE_DATE_EPOCH")
    assert got.revision == git(repository, "log", "-1", "--format=%H", "--", "images/app")


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5"])
def test_a_source_date_epoch_that_is_not_whole_seconds_is_bad_input(repository: Path, value: str) -> None:
    with pytest.raises(UsageError) as raised:
        source_time(repository / "images" / "app", {"SOURCE_DATE_EPOCH": value})
    assert "SOURCE_DATE_EPOCH" in raised.value.message and raised.value.exit_code == 2


def test_outside_git_and_before_the_first_commit_the_time_is_fixed(repository: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert source_time(plain, {}) == SourceTime(FIXED_EPOCH, UNKNOWN_REVISION, "fixed")
    new = repository / "images" / "new"
    new.mkdir()
    (new / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    assert source_time(new, {}) == SourceTime(FIXED_EPOCH, UNKNOWN_REVISION, "fixed")


def test_a_shallow_clone_without_the_folders_commit_is_refused(repository: Path, tmp_path: Path) -> None:
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repository}", str(shallow))
    with pytest.raises(UsageError) as raised:
        source_time(shallow / "images" / "app", {})
    assert "shallow" in raised.value.message and "fetch-depth: 0" in (raised.value.fix or "")
    # Holding the folder's commit is not enough when it is the clone's oldest (its parent could have had the same
    # folder); one deep enough to hold its parent gives what a full clone gives.
    for depth, refused in (("2", True), ("3", False)):
        deeper = tmp_path / f"depth-{depth}"
        git(tmp_path, "clone", "-q", "--depth", depth, f"file://{repository}", str(deeper))
        if refused:
            with pytest.raises(UsageError):
                source_time(deeper / "images" / "app", {})
    assert source_time(deeper / "images" / "app", {}) == source_time(repository / "images" / "app", {})
