"""The workflows against how GitHub Actions and GHCR really behave (issue 18), one section per point; points 2 and 7's
script in test_open_pull_request.py, points 4, 5 and 6's signing in sign/test_github_signing.py:

1. pull requests opened with the job token start no workflow: every check they need is dispatched;
3. a package's first publish is private: published references are read anonymously afterwards (by an option the
   tool really takes: every tool call in the workflows is parsed by the tool's own door), and a plan that cannot
   read the target builds nothing rather than everything;
7. a scheduled run's event has no repository: the default branch has a fallback;
8. the reusable workflow: unique artifact names, the caller's lock file, lowercased registry, its own identity;
9. the optional Docker Hub login in every job that pulls, never in pull-request jobs.

Workflow checks are functions of the workflow texts, so each is also run on a copy with the fix undone.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ci_images.errors import PlanError
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.matrix import job_matrix
from ci_images.sign import keyless
from tests.unit.conftest import EntryFactory
from tests.unit.test_workflows import PR_EVENTS, ROOT, _broken, _steps, load, workflows

REPOSITORY = "getsops/ci-container-images"
README = ROOT / "README.md"


def _events(data: Mapping[str, Any]) -> set[str]:
    on = data["on"]
    return {on} if isinstance(on, str) else set(on)


def _glob(pattern: str) -> re.Pattern[str]:
    """GitHub's path filter globs: ``**`` any characters, ``*`` any but ``/``."""
    parts = re.split(r"(\*\*|\*)", pattern)
    regex = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def _pull_request_workflows_for(files: Mapping[str, str], paths: list[str]) -> list[str]:
    """The workflows a pull request changing ``paths`` starts (pull_request, honouring its paths filter)."""
    started = []
    for name, text in files.items():
        data = load(text)
        if "pull_request" not in _events(data):
            continue
        trigger = data["on"]["pull_request"] if isinstance(data["on"], dict) else None
        filters = (trigger or {}).get("paths")
        if not filters or any(_glob(f).match(p) for f in filters for p in paths):
            started.append(name)
    return sorted(started)


def bot_pull_requests_without_checks(files: Mapping[str, str]) -> list[str]:
    """Every job that opens a pull request (.ci/open-pull-request) belongs to a workflow that dispatches, on that
    pull request's branch, each workflow such a pull request would start (and each of those can be dispatched)."""
    problems = []
    for name, text in files.items():
        for job, step in _steps(load(text)):
            match = re.search(r"\.ci/open-pull-request\s+(.+)", str(step.get("run", "")))
            if not match:
                continue
            paths = shlex.split(match.group(1))[3:]
            for needed in _pull_request_workflows_for(files, paths):
                if "workflow_dispatch" not in _events(load(files[needed])):
                    problems.append(f"{needed}: has no workflow_dispatch, so {name} cannot start it")
                if not re.search(rf"gh workflow run {re.escape(needed)} --ref\b", text):
                    problems.append(f"{name}: job {job} opens a pull request but never dispatches {needed}")
    return problems


def test_1_bot_pull_requests_get_every_check_a_person_s_would() -> None:
    assert _pull_request_workflows_for(workflows(), ["images.yaml", "README.md"]) == [
        "images-pr.yml",
        "tests.yml",
    ]
    assert _pull_request_workflows_for(workflows(), ["images.lock.json"]) == ["tests.yml"]
    assert bot_pull_requests_without_checks(workflows()) == []


def test_1_bot_pull_requests_use_a_github_app_token_where_there_is_one() -> None:
    for name, job_name in [("bump.yml", "bump"), ("ci-images.yml", "deliver-lock")]:
        job = load(workflows()[name])["jobs"][job_name]
        (app,) = [s for s in job["steps"] if "create-github-app-token" in str(s.get("uses"))]
        assert app["if"] == "env.HAS_APP == 'true'" and re.search(r"@[0-9a-f]{40} ", app["uses"] + " ")
        (opener,) = [s for s in job["steps"] if ".ci/open-pull-request" in str(s.get("run"))]
        assert opener["env"]["GH_TOKEN"] == "${{ steps.app.outputs.token || secrets.GITHUB_TOKEN }}"
        assert job["outputs"]["app"] == "${{ steps.app.outputs.token != '' }}"


@pytest.mark.parametrize(
    ("name", "old"),
    [
        ("tests.yml", "  workflow_dispatch:\n"),
        ("bump.yml", '          gh workflow run tests.yml --ref "${BRANCH}"\n'),
        ("ci-images.yml", "        run: gh workflow run tests.yml --ref ci-images/lock-file\n"),
    ],
)
def test_1_a_check_a_bot_pull_request_would_not_get_is_caught(name: str, old: str) -> None:
    assert bot_pull_requests_without_checks(_broken(name, lambda t: t.replace(old, "", 1)))


# ---- 3: private first publish ------------------------------------------------------------------------------------------


def _error(entry: Any) -> Decision:
    reason = "HEAD https://ghcr.io/v2/o/r/manifests/1: 401 unauthorized; fix: no credentials were given for ghcr.io"
    return Decision(entry, "error", reason, None, None, TargetState(None), error_code=3)


def test_3_a_plan_that_could_read_nothing_builds_nothing(make_entry: EntryFactory) -> None:
    decisions = [_error(make_entry()), _error(make_entry(version="2.0.0"))]
    with pytest.raises(PlanError, match="none of the 2 entries could be planned") as caught:
        job_matrix(decisions)
    assert caught.value.exit_code == 3
    assert "make each package public" in str(caught.value)


def test_3_an_entry_that_cannot_be_read_beside_readable_ones_is_still_built(make_entry: EntryFactory) -> None:
    """GHCR answers "denied" for a package that does not exist yet: a new image in a pull request is built."""
    new = make_entry(image="other")
    decisions = [
        Decision(make_entry(), "skip", "up to date", None, None, TargetState(None)),
        _error(new),
    ]
    assert job_matrix(decisions) == {"include": [{"image": "other", "entries": [new.key]}]}


def test_3_publishing_ends_with_an_anonymous_read_of_what_it_published() -> None:
    steps = load(workflows()["ci-images.yml"])["jobs"]["publish"]["steps"]
    runs = [str(s.get("run", "")) for s in steps]
    push = next(i for i, r in enumerate(runs) if "--push" in r)
    (check,) = [i for i, r in enumerate(runs) if "--check-public" in r]
    assert check > push
    assert not any("secrets" in str(v) for v in steps[check].get("env", {}).values())  # no token: anonymous


# What each nox session runs: `python -m ci_images COMMAND *posargs` (noxfile.py).
NOX_COMMANDS = {
    "ci-images": "ci",
    "verify-images": "verify-images",
    "outdated": "outdated",
    "bump": "bump",
    "docs": "docs",
}


def _nox_calls(files: Mapping[str, str]) -> list[tuple[str, str, list[str]]]:
    """(workflow, command, argv after `--`) of every `nox [-f FILE] -s SESSION -- ...` the workflows run, with the
    shell's expansions as a run gives them: ``"${VAR}"`` one value, ``"${VAR}/x"`` a path, and a bare ``${VAR}``
    (a flag or nothing, e.g. ``${FORCE}``, ``${IMAGES:+--images ...}``) nothing."""
    calls = []
    for name, text in files.items():
        for _, step in _steps(load(text)):
            run = str(step.get("run", "")).replace("\\\n", " ")
            for match in re.finditer(r"nox (?:-f \S+ )?-s ([\w-]+) -- ([^\n>|]*)", run):
                args = re.sub(r'"\$\{\w+\}(/[^"]*)"', r"/tmp\1", match.group(2))
                args = re.sub(r'"\$\{\w+\}"', "value", args)
                while re.search(r"\$\{[^{}]*\}", args):
                    args = re.sub(r"\$\{[^{}]*\}", "", args)
                calls.append((name, NOX_COMMANDS[match.group(1)], shlex.split(args)))
    return calls


def tool_calls_the_tool_refuses(files: Mapping[str, str]) -> list[str]:
    """Every option a workflow passes to the tool is one the command takes, and no two contradict each other:
    the publish job's last step ran `--check-public` before the tool had it, and nothing noticed."""
    from ci_images.cli.argv import build_parser
    from ci_images.commands.options import parse_options
    from ci_images.errors import UsageError

    problems = []
    for name, command, argv in _nox_calls(files):
        parsed, extra = build_parser().parse_known_args([command, *argv])
        given = {k: v for k, v in vars(parsed).items() if k != "command"}
        try:
            if extra:
                raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
            parse_options(command, given, {})
        except UsageError as exc:
            problems.append(f"{name}: {command} {shlex.join(argv)}: {exc.message}")
    return problems


def test_3_every_tool_call_in_the_workflows_is_one_the_tool_takes() -> None:
    calls = _nox_calls(workflows())
    assert ("ci-images.yml", "ci", ["--check-public", "--images", "value"]) in calls
    assert (
        "build-images.yml",
        "ci",
        ["--json", "/tmp/report.json", "--lock", "/tmp/images.lock.json"],
    ) in calls
    assert tool_calls_the_tool_refuses(workflows()) == []


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("--check-public --images", "--check-publik --images", "unrecognized arguments: --check-publik"),
        (
            "-- --lock-only",
            "-- --lock-only --check-public",
            "--check-public and --lock-only cannot be used together",
        ),
    ],
)
def test_3_a_tool_call_the_tool_refuses_is_caught(old: str, new: str, says: str) -> None:
    (problem,) = tool_calls_the_tool_refuses(_broken("ci-images.yml", lambda text: text.replace(old, new)))
    assert problem.startswith("ci-images.yml: ci ") and says in problem


def test_3_a_private_ghcr_package_gets_the_exact_fix() -> None:
    from ci_images.catalog.refs import parse_repository
    from ci_images.registry.visibility import PRIVATE, fix_for, ghcr_package

    mirror = parse_repository("ghcr.io/getsops/ci-container-images/mirror/library/vault")
    assert ghcr_package(mirror) == ("getsops", "ci-container-images/mirror/library/vault")
    fix = fix_for(mirror, PRIVATE, source_repository=REPOSITORY)
    assert (
        "https://github.com/orgs/getsops/packages/container/ci-container-images%2Fmirror%2Flibrary%2Fvault/settings"
        in fix
    )
    for needed in [
        "Change visibility -> Public",
        f"link it to {REPOSITORY}",
        "Connect repository",
        "https://github.com/organizations/getsops/settings/packages",
        "org.opencontainers.image.source",
    ]:
        assert needed in fix, needed


def test_3_readme_has_a_first_publish_checklist() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Publishing to GHCR the first time") :]
    section = section[: section.index("\n### ", 5)]
    for needed in [
        "private",
        "Change visibility",
        "Package creation",
        "org.opencontainers.image.source",
        "mirror",
    ]:
        assert needed in section, needed


# ---- 7: scheduled runs --------------------------------------------------------------------------------------------------

EVENT_REPOSITORY = re.compile(r"\$\{\{([^}]*github\.event\.repository[^}]*)\}\}")


def scheduled_runs_without_a_default_branch(files: Mapping[str, str]) -> list[str]:
    """In a workflow a schedule starts, every expression reading github.event.repository falls back to
    github.ref_name (a scheduled run's event carries no repository; it runs on the default branch)."""
    problems = []
    for name, text in files.items():
        if "schedule" not in _events(load(text)):
            continue
        for expression in EVENT_REPOSITORY.findall(text):
            if "github.event_name == 'schedule'" in text and "format(" in expression:
                continue  # guarded by the event name in the same condition
            if "|| github.ref_name" not in expression:
                problems.append(f"{name}: ${{{{{expression}}}}} is empty in a scheduled run")
    return problems


def test_7_scheduled_runs_know_the_default_branch() -> None:
    assert scheduled_runs_without_a_default_branch(workflows()) == []
    broken = _broken("bump.yml", lambda t: t.replace(" || github.ref_name }}", " }}"))
    assert scheduled_runs_without_a_default_branch(broken) == [
        "bump.yml: ${{ github.event.repository.default_branch }} is empty in a scheduled run"
    ]


# ---- 8: the reusable workflow --------------------------------------------------------------------------------------------


def _step(name: str) -> dict[str, Any]:
    steps = load(workflows()["build-images.yml"])["jobs"]["images"]["steps"]
    (step,) = [s for s in steps if s.get("name") == name or s.get("id") == name]
    return dict(step)


def _run_step(
    step: Mapping[str, Any], tmp_path: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """A step's own shell script under bash -e, as the runner starts it, with the expressions' values in ``env``."""
    return subprocess.run(
        ["bash", "-e", "-c", str(step["run"])],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_8_each_call_names_its_lock_artifact_and_starts_from_the_caller_s_lock(tmp_path: Path) -> None:
    names = _step("names")
    assert set(names["env"]) >= {"CATALOG", "IMAGES", "REGISTRY", "LOCK_FILE"}
    (tmp_path / "temp").mkdir()
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "images.lock.json").write_text('{"images": {"x": 1}}', encoding="utf-8")

    def lock_name(images: str) -> str:
        output = tmp_path / f"out-{images}"
        env = {"CATALOG": "ci/images.yaml", "IMAGES": images, "REGISTRY": "ghcr.io/Org/App"}
        env |= {
            "LOCK_FILE": "ci/images.lock.json",
            "GITHUB_OUTPUT": str(output),
            "RUNNER_TEMP": str(tmp_path / "temp"),
        }
        result = _run_step(names, tmp_path, env)
        assert result.returncode == 0, result.stderr
        return dict(line.split("=", 1) for line in output.read_text().splitlines())["lock"]

    first, second = lock_name("vault"), lock_name("local-kms")
    assert first != second and first.startswith("images-lock-") and lock_name("vault") == first
    assert json.loads((tmp_path / "temp" / "images.lock.json").read_text()) == {"images": {"x": 1}}
    upload = [
        s
        for s in load(workflows()["build-images.yml"])["jobs"]["images"]["steps"]
        if "upload-artifact" in str(s.get("uses"))
    ]
    assert [s["with"]["name"] for s in upload] == ["${{ steps.names.outputs.lock }}"]
    outputs = load(workflows()["build-images.yml"])["jobs"]["images"]["outputs"]
    assert outputs["lock-file"] == "${{ inputs.push && steps.names.outputs.lock || '' }}"


def test_8_the_registry_reaches_the_tool_in_lowercase(tmp_path: Path) -> None:
    step = _step("nox -s ci-images")
    assert "CI_IMAGES_REGISTRY" not in step["env"]  # only through the lowering below
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nox").write_text('#!/bin/sh\necho "$CI_IMAGES_REGISTRY"\n', encoding="utf-8")
    (fake / "nox").chmod(0o755)
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}",
        "REGISTRY": "ghcr.io/GetSops/CI-Images",
        "RUNNER_TEMP": "/tmp",
    }
    result = subprocess.run(
        ["bash", "-e", "-c", str(step["run"])], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ghcr.io/getsops/ci-images"


def test_8_called_from_this_repository_it_still_signs_as_the_reusable_workflow() -> None:
    step = _step("nox -s ci-images")
    assert step["env"]["CI_IMAGES_SIGN_CALLER"] == "${{ github.repository }}"
    assert step["env"]["CI_IMAGES_SIGN_WORKFLOW"] == ".github/workflows/build-images.yml"
    same = {
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/images.yml@refs/heads/main",
        "CI_IMAGES_SIGN_REPOSITORY": REPOSITORY,
        "CI_IMAGES_SIGN_WORKFLOW": ".github/workflows/build-images.yml",
        "CI_IMAGES_SIGN_CALLER": REPOSITORY,
    }
    assert keyless.workflow_identity(same) is None  # not the caller's file
    policy = keyless.identity_policy(same, repository=REPOSITORY)
    assert policy == keyless.reusable_policy(REPOSITORY, REPOSITORY)


# ---- 9: the optional Docker Hub login ------------------------------------------------------------------------------------

PULLING_SESSIONS = re.compile(r"\bnox(?:\s+-f\s+\S+)?\s+-s\s+(ci-images|outdated|bump)\b")
LOGIN = {
    "CI_IMAGES_UPSTREAM_USER": "${{ secrets.CI_IMAGES_UPSTREAM_USER }}",
    "CI_IMAGES_UPSTREAM_PASSWORD": "${{ secrets.CI_IMAGES_UPSTREAM_PASSWORD }}",
}


def jobs_that_pull_without_the_login(files: Mapping[str, str]) -> list[str]:
    """Outside pull-request workflows, every job running a session that reads Docker Hub gets the optional login from
    secrets (job or step env); pull-request workflows are held to no secrets by test_workflows.py."""
    problems = []
    for name, text in files.items():
        data = load(text)
        if PR_EVENTS & _events(data):
            continue
        for job_name, job in data.get("jobs", {}).items():
            for step in job.get("steps", []):
                run = str(step.get("run", ""))
                if not PULLING_SESSIONS.search(run) or "--check-public" in run:
                    continue
                env = {**job.get("env", {}), **step.get("env", {})}
                if {k: env.get(k) for k in LOGIN} != LOGIN:
                    problems.append(
                        f"{name}: job {job_name} runs `{run.split(chr(10), maxsplit=1)[0][:40]}` without the login"
                    )
                    break
    return problems


def test_9_every_job_that_pulls_logs_in_when_it_can() -> None:
    assert jobs_that_pull_without_the_login(workflows()) == []
    secrets = load(workflows()["build-images.yml"])["on"]["workflow_call"]["secrets"]
    assert {k: v["required"] for k, v in secrets.items()} == dict.fromkeys(LOGIN, False)


def test_9_a_job_without_the_login_is_caught() -> None:
    broken = _broken(
        "ci-images.yml",
        lambda t: t.replace("      CI_IMAGES_UPSTREAM_USER: ${{ secrets.CI_IMAGES_UPSTREAM_USER }}\n", "", 1),
    )
    assert jobs_that_pull_without_the_login(broken) == [
        "ci-images.yml: job plan runs `nox -s ci-images -- --matrix ${FORCE}` without the login"
    ]
