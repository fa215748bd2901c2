"""The workflows against how GitHub Actions and GHCR really behave (issue 18), one section per point:

1. pull requests opened with the job token start no workflow: every check they need is dispatched;
2. the job token may open pull requests only where a setting allows it: checked before pushing, one clear error;
3. a package's first publish is private: published references are read anonymously afterwards, and a plan that
   cannot read the target builds nothing rather than everything;
4. cosign v3 prints no identity for a bundle: the lock file still records the exact signer (see also
   test_sign_documents.py for the output shapes);
5. cosign v2 cannot see v3's bundles: README names the version and the exact commands;
6. keyless verification pins the publishing workflow on the default branch, and the reusable workflow's caller;
7. a scheduled run's event has no repository: the default branch has a fallback;
8. the reusable workflow: unique artifact names, the caller's lock file, lowercased registry, its own identity;
9. the optional Docker Hub login in every job that pulls, never in pull-request jobs.

Workflow checks are functions of the workflow texts, so each is also run on today's text with the fix undone.
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

from ci_images.errors import PlanError, UsageError
from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.matrix import job_matrix
from ci_images.run.signatures import configured_signer, lock_verifier
from ci_images.sign import keyless
from tests.unit.conftest import EntryFactory
from tests.unit.test_workflows import PR_EVENTS, ROOT, _broken, _steps, load, workflows

FIXTURES = Path(__file__).parent / "fixtures" / "sigstore"
REPOSITORY = "getsops/ci-container-images"
URL = f"https://github.com/{REPOSITORY}"
PUBLISHER = f"https://github.com/{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/main"
DIGEST = "sha256:" + "ab" * 32
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


# ---- 2: "Allow GitHub Actions to create and approve pull requests" ---------------------------------------------------


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


def test_3_a_private_ghcr_package_gets_the_exact_fix() -> None:
    from ci_images.catalog.refs import parse_repository
    from ci_images.run.visibility import PRIVATE, fix_for, ghcr_package

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


# ---- 4 and 6: keyless identity, exactly ---------------------------------------------------------------------------------


def _cosign_printing(folder: Path, output_file: Path, record: Path) -> dict[str, str]:
    script = folder / "cosign"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\ncat {output_file}\n', encoding="utf-8")
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def _verify_with(tmp_path: Path, fixture: str, env: Mapping[str, str]) -> tuple[Any, list[str]]:
    from ci_images.catalog.refs import parse_repository
    from ci_images.registry.client import RegistryClient

    record = tmp_path / "argv"
    full = {**_cosign_printing(tmp_path, FIXTURES / fixture, record), **env}
    verifier = lock_verifier(None, True, full, default_url=URL)
    assert verifier is not None
    repository = parse_repository(f"ghcr.io/{REPOSITORY}/vault")
    verdict = verifier.verify(RegistryClient("ghcr.io"), repository, DIGEST)
    return verdict, record.read_text().splitlines()


def test_4_a_bundle_verified_from_a_branch_run_records_the_publishing_identity(tmp_path: Path) -> None:
    """cosign v3 prints a bundle without Subject; the lock job of a run dispatched on a branch must not record its own
    GITHUB_WORKFLOW_REF (refs/heads/feature) for digests the default branch signed."""
    env = {
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/feature",
    }
    verdict, _ = _verify_with(tmp_path, "cosign-verify-bundle-sign.txt", env)
    assert verdict.ok and verdict.signer == PUBLISHER


def test_6_verification_pins_the_publishing_workflow_on_the_default_branch(tmp_path: Path) -> None:
    env = {"GITHUB_REPOSITORY": REPOSITORY, "CI_IMAGES_SIGN_REF": "refs/heads/main"}
    _, argv = _verify_with(tmp_path, "cosign-verify-bundle-sign.txt", env)
    assert argv[:5] == [
        "verify",
        "--certificate-identity",
        PUBLISHER,
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
    ]
    assert "--certificate-identity-regexp" not in argv


def test_6_the_reusable_workflow_is_pinned_to_its_caller(tmp_path: Path) -> None:
    env = {
        "GITHUB_REPOSITORY": "someorg/app",
        "CI_IMAGES_SIGN_REPOSITORY": REPOSITORY,
        "CI_IMAGES_SIGN_WORKFLOW": ".github/workflows/build-images.yml",
        "CI_IMAGES_SIGN_CALLER": "someorg/app",
    }
    _, argv = _verify_with(tmp_path, "cosign-verify-bundle-sign.txt", env)
    assert argv[:7] == [
        "verify",
        "--certificate-identity-regexp",
        r"^https://github\.com/getsops/ci-container-images/\.github/workflows/build-images\.yml@",
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        "--certificate-github-workflow-repository",
        "someorg/app",
    ]


def test_6_a_publish_dispatched_from_a_branch_stops_before_pushing(tmp_path: Path) -> None:
    cosign = tmp_path / "cosign"
    cosign.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    cosign.chmod(0o755)
    env = {
        "PATH": str(tmp_path),
        "ACTIONS_ID_TOKEN_REQUEST_URL": "u",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t",
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/feature",
    }
    with pytest.raises(UsageError, match="verification accepts only") as caught:
        configured_signer(None, True, env, default_url=URL)
    assert caught.value.exit_code == 2
    main = {**env, "GITHUB_WORKFLOW_REF": f"{REPOSITORY}/.github/workflows/ci-images.yml@refs/heads/main"}
    assert configured_signer(None, True, main, default_url=URL) is not None


def test_6_only_the_default_branch_publishes() -> None:
    data = load(workflows()["ci-images.yml"])
    publish = data["jobs"]["publish"]
    assert "github.ref == format('refs/heads/{0}', github.event.repository.default_branch)" in publish["if"]
    assert "github.event_name == 'schedule'" in publish["if"]
    guard = data["jobs"]["plan"]["steps"][0]
    assert guard["env"]["REF"] == "${{ github.ref }}" and "refs/heads/${DEFAULT_BRANCH}" in guard["run"]
    for job in ("publish", "lock"):
        assert data["jobs"][job]["env"]["CI_IMAGES_SIGN_REF"] == (
            "refs/heads/${{ github.event.repository.default_branch || github.ref_name }}"
        )


# ---- 5: README names the cosign versions and the exact commands -------------------------------------------------------


def _readme_cosign_verifies(text: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.strip().startswith("cosign verify"):
                commands.append(shlex.split(line))
    return commands


def test_5_readme_names_the_cosign_version_and_the_exact_pinned_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "cosign v3.0 or later" in text and "cosign v2" in text
    keyless_commands = [c for c in _readme_cosign_verifies(text) if "--key" not in c]
    publishing = keyless.publishing_policy(REPOSITORY).flags()
    reusable = keyless.reusable_policy(REPOSITORY, "OWNER/REPO").flags()
    assert len(keyless_commands) >= 3
    for command in keyless_commands:
        flags = command[2:-1]
        assert flags in (publishing, reusable), command


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


def test_7_open_pull_request_needs_the_base_branch(checkout: tuple[Path, Path, Path]) -> None:
    work, origin, bin_dir = checkout
    _gh(bin_dir, setting="true", create="ok")
    result = _open_pull_request(work, bin_dir)  # no BASE
    assert result.returncode != 0 and "BASE must name the branch" in result.stderr
    assert _remote_branches(origin) == ["refs/heads/main"]


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
