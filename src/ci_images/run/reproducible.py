"""The time and revision an assembled image records, from its inputs only, never from the clock or the checkout.

An assembled image's ``created`` (config, history, label) is, in this order:

1. ``SOURCE_DATE_EPOCH`` when set (reproducible-builds.org's variable: whole seconds since 1970);
2. else the commit time of the last commit that touched the build folder (``git log -1 --format=%ct -- FOLDER``):
   the same in every clone, whatever the checkout's file times;
3. else (no git, or a folder no commit has touched yet) ``FIXED_EPOCH``, 1970-01-01T00:00:00Z, as ko and apko do.

Its ``org.opencontainers.image.revision`` label is that same commit (``unknown`` without one), not the repository's
HEAD: a later commit that leaves the folder alone changes neither the image nor its digest.

A shallow clone (actions/checkout's default depth of 1) may not hold the folder's last commit: the oldest commit it
has then seems to have added every file, and its time and revision would differ from a full clone's. That is refused
(exit 2), with SOURCE_DATE_EPOCH too (the revision still comes from git): fetch the history (``fetch-depth: 0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci_images import proc
from ci_images.errors import CommandError, UsageError
from ci_images.log import log

FIXED_EPOCH = 0
UNKNOWN_REVISION = "unknown"


@dataclass(frozen=True)
class SourceTime:
    epoch: int  # seconds since 1970, UTC
    revision: str  # the build folder's last commit, or "unknown"
    origin: str  # where epoch came from: SOURCE_DATE_EPOCH, git, fixed


def _env_epoch(env: Mapping[str, str]) -> int | None:
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise UsageError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds since 1970",
            fix="set it to e.g. $(git log -1 --format=%ct), or unset it",
        )
    return int(raw)


def _git(folder: Path, *args: str) -> tuple[int, str, str]:
    result = proc.run(["git", "-C", folder, *args], check=False, timeout=30)
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def _last_commit(folder: Path) -> tuple[str, int] | None:
    """The folder's last commit and its time; None when git or the repository is missing, or no commit has it."""
    try:
        code, out, err = _git(folder, "log", "-1", "--format=%H %ct", "--", ".")
    except CommandError:  # no git on this machine
        log.warning(f"git is not installed: {folder} gets the fixed time (1970) in its assembled images")
        return None
    if code != 0:
        if "not a git repository" in err:
            return None
        raise UsageError(
            f"git cannot read the history of {folder}: {err}",
            fix="fix the repository (e.g. `git config --global --add safe.directory PATH`)",
        )
    if not out:
        return None  # a folder not committed yet
    commit, _, when = out.partition(" ")
    _refuse_shallow_boundary(folder, commit)
    return commit, int(when)


def _refuse_shallow_boundary(folder: Path, commit: str) -> None:
    code, shallow_file, _ = _git(folder, "rev-parse", "--path-format=absolute", "--git-path", "shallow")
    if code != 0 or not shallow_file or not Path(shallow_file).is_file():
        return
    boundary = set(Path(shallow_file).read_text(encoding="utf-8").split())
    if commit in boundary:
        raise UsageError(
            f"{folder}: this clone is shallow and does not hold the folder's last commit, so the time its assembled "
            "images record cannot be read (a full clone would give another time and revision, hence other digests)",
            fix="fetch the history: actions/checkout with fetch-depth: 0, or `git fetch --unshallow`",
        )


def source_time(folder: Path, env: Mapping[str, str]) -> SourceTime:
    """What an image assembled from ``folder`` records as its time and revision (see the module docstring)."""
    epoch = _env_epoch(env)
    commit = _last_commit(folder)
    revision = commit[0] if commit else UNKNOWN_REVISION
    if epoch is not None:
        return SourceTime(epoch, revision, "SOURCE_DATE_EPOCH")
    if commit is not None:
        return SourceTime(commit[1], revision, "git")
    return SourceTime(FIXED_EPOCH, revision, "fixed")
