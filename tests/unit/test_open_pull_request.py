"""`.ci/open-pull-request` as GitHub Actions runs it (issue 18, points 2 and 7): the job token may open a pull
request only where "Allow GitHub Actions to create and approve pull requests" is on, so the setting is checked before
anything is pushed, and a refusal leaves no branch behind; the base branch must be given (a scheduled run's event
has no repository to take it from).

git and the script are real: the checkout pushes to a bare repository on disk. GitHub cannot be reached from here, so
`gh` is a stand-in that answers as GitHub does (the setting, and the refusal's message).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_workflows import ROOT

README = ROOT / "README.md"


def _git(cwd: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(a checkout with one changed file, its bare origin, a folder for a stand-in `gh`): GitHub itself cannot be
    reached from here; git and the script are real."""
    origin, work, bin_dir = tmp_path / "origin.git", tmp_path / "work", tmp_path / "bin"
    bin_dir.mkdir()
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    _git(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    for key, value in [("user.name", "t"), ("user.email", "t@example.invalid")]:
        _git(work, "config", key, value)
    (work / "images.lock.json").write_text("{}\n", encoding="utf-8")
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "base")
    _git(work, "remote", "add", "origin", str(origin))
    _git(work, "push", "--quiet", "origin", "main")
    (work / "images.lock.json").write_text('{"images": {}}\n', encoding="utf-8")
    (work / "body.md").write_text("body\n", encoding="utf-8")
    return work, origin, bin_dir


def _gh(bin_dir: Path, *, setting: str, create: str) -> Path:
    """A stand-in `gh`: the repository setting as the API answers it (`false`, or `forbidden` for a token that may
    not read it), and what `gh pr create` does (`ok`, or `refused` with GitHub's message)."""
    calls = bin_dir / "calls"
    setting_answer = (
        'echo "gh: Resource not accessible by integration (HTTP 403)" >&2; exit 1'
        if setting == "forbidden"
        else f"echo {setting}"
    )
    create_answer = (
        'echo "pull request create failed: GraphQL: GitHub Actions is not permitted to create or approve pull '
        'requests (createPullRequest)" >&2; exit 1'
        if create == "refused"
        else "echo https://github.com/o/r/pull/1"
    )
    script = bin_dir / "gh"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        'case "$1 $2" in\n'
        '  "pr list") exit 0 ;;\n'
        f'  "api "*) {setting_answer} ;;\n'
        '  "auth setup-git") exit 0 ;;\n'
        f'  "pr create") {create_answer} ;;\n'
        "esac\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return calls


def _open_pull_request(work: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "bash",
            str(ROOT / ".ci" / "open-pull-request"),
            "ci-images/lock-file",
            "t",
            "body.md",
            "images.lock.json",
        ],
        cwd=work,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(work),
            "GH_TOKEN": "job-token",
            "GITHUB_REPOSITORY": "o/r",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def _remote_branches(origin: Path) -> list[str]:
    return _git(origin, "for-each-ref", "--format=%(refname)", "refs/heads").split()


def test_2_a_repository_that_forbids_it_is_told_so_before_anything_is_pushed(
    checkout: tuple[Path, Path, Path],
) -> None:
    work, origin, bin_dir = checkout
    calls = _gh(bin_dir, setting="false", create="ok")
    result = _open_pull_request(work, bin_dir, BASE="main")
    assert result.returncode == 1
    assert "Allow GitHub Actions to create and approve pull requests" in result.stderr
    assert _remote_branches(origin) == ["refs/heads/main"]  # nothing pushed
    assert "pr create" not in calls.read_text()


def test_2_a_refusal_the_job_token_could_not_foresee_leaves_no_branch_behind(
    checkout: tuple[Path, Path, Path],
) -> None:
    """The job token may not read the setting (it needs Administration): GitHub's refusal gets the same error."""
    work, origin, bin_dir = checkout
    _gh(bin_dir, setting="forbidden", create="refused")
    result = _open_pull_request(work, bin_dir, BASE="main")
    assert result.returncode == 1
    assert result.stderr.count("Allow GitHub Actions to create and approve pull requests") == 1
    assert _remote_branches(origin) == ["refs/heads/main"]


def test_2_where_it_is_allowed_the_pull_request_opens(checkout: tuple[Path, Path, Path]) -> None:
    work, origin, bin_dir = checkout
    calls = _gh(bin_dir, setting="true", create="ok")
    output = work / "github-output"
    result = _open_pull_request(work, bin_dir, BASE="main", GITHUB_OUTPUT=str(output))
    assert result.returncode == 0, result.stderr
    assert "refs/heads/ci-images/lock-file" in _remote_branches(origin)
    assert "pr create --head ci-images/lock-file --base main" in calls.read_text()
    assert output.read_text() == "changed=true\n"


def test_2_readme_names_the_setting_and_the_app() -> None:
    text = README.read_text(encoding="utf-8")
    assert "Allow GitHub Actions to create and approve pull requests" in text
    assert "CI_IMAGES_APP_CLIENT_ID" in text and "CI_IMAGES_APP_PRIVATE_KEY" in text


def test_7_open_pull_request_needs_the_base_branch(checkout: tuple[Path, Path, Path]) -> None:
    work, origin, bin_dir = checkout
    _gh(bin_dir, setting="true", create="ok")
    result = _open_pull_request(work, bin_dir)  # no BASE
    assert result.returncode != 0 and "BASE must name the branch" in result.stderr
    assert _remote_branches(origin) == ["refs/heads/main"]
