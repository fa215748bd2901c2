"""The GitHub workflows, read as data: every `nox -s NAME` they run exists, every matrix field they read is one
`--matrix` makes, and jobs that pull requests start (forks included) reference no secret and hold no id-token or
write permission. Each check is also run on a deliberately broken copy and must catch it.

actionlint, zizmor and the workflow JSON Schema run in `nox -s workflow-lint`; these checks know this project.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_images.plan.decide import Decision, TargetState
from ci_images.plan.matrix import FIELDS, job_matrix
from tests.unit.conftest import EntryFactory

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NOX_RUN = re.compile(r"\bnox(?:\s+-f\s+(?P<file>\S+))?\s+-s\s+(?P<name>[A-Za-z0-9_.-]+)")
MATRIX_FIELD = re.compile(r"\bmatrix\.([A-Za-z_][A-Za-z0-9_-]*)")
SECRET = re.compile(r"\bsecrets\s*[.\[]")
PR_EVENTS = frozenset({"pull_request", "pull_request_target"})


def load(text: str) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load(text)
    # YAML 1.1 reads the key `on` as the boolean true.
    return {("on" if key is True else str(key)): value for key, value in raw.items()}


def workflows() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(WORKFLOWS.glob("*.yml"))}


def nox_sessions(noxfile: Path = ROOT / "noxfile.py") -> set[str]:
    """Session names as nox lists them: the `name=` of @nox.session, else the function's name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(noxfile.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) != "nox.session":
                continue
            named = [k.value for k in (call.keywords if call else []) if k.arg == "name"]
            names.add(str(named[0].value) if named and isinstance(named[0], ast.Constant) else node.name)
    return names


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _steps(data: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for job_name, job in data.get("jobs", {}).items():
        for step in job.get("steps", []):
            yield job_name, step


# ---- the checks: each returns its problems, one line each -----------------------------------------------------


def missing_nox_sessions(files: Mapping[str, str]) -> list[str]:
    known = nox_sessions()
    problems = []
    for name, text in files.items():
        for job, step in _steps(load(text)):
            for match in NOX_RUN.finditer(str(step.get("run", ""))):
                # The reusable workflow runs this repository's noxfile from its own checkout (.ci-images).
                if match.group("name") not in known:
                    problems.append(
                        f"{name}: job {job} runs `nox -s {match.group('name')}`, which noxfile.py lacks"
                    )
    return problems


def matrix_fields_not_produced(files: Mapping[str, str], produced: set[str]) -> list[str]:
    problems = []
    for name, text in files.items():
        for job_name, job in load(text).get("jobs", {}).items():
            matrix = job.get("strategy", {}).get("matrix")
            if not (isinstance(matrix, str) and "outputs.matrix" in matrix):
                continue  # a matrix written out in the workflow, not the one --matrix makes
            used = {field for text in _strings(job) for field in MATRIX_FIELD.findall(text)}
            problems += [
                f"{name}: job {job_name} reads matrix.{field}, which --matrix does not make"
                for field in sorted(used - produced)
            ]
    return problems


def shallow_builds(files: Mapping[str, str]) -> list[str]:
    """Jobs that build images (``nox -s ci-images`` without --matrix or --lock-only) or run the tests must check out
    the catalog's repository with its history (``fetch-depth: 0``): an assembled image records its build folder's
    last commit, which a shallow clone does not hold, and the tool refuses one."""
    problems = []
    for name, text in files.items():
        for job_name, job in load(text).get("jobs", {}).items():
            steps = job.get("steps", [])
            runs = [str(step.get("run", "")) for step in steps]
            builds = any(
                "-s ci-images" in run and "--matrix" not in run and "--lock-only" not in run for run in runs
            ) or any(re.search(r"\bnox -s tests\b", run) for run in runs)
            checkouts = [
                step.get("with") or {}
                for step in steps
                if str(step.get("uses", "")).startswith("actions/checkout@")
                and not (step.get("with") or {}).get("path")
            ]
            if builds and not any(str(c.get("fetch-depth")) == "0" for c in checkouts):
                problems.append(
                    f"{name}: job {job_name} builds images from a shallow checkout (add fetch-depth: 0)"
                )
    return problems


def _permissions(block: object) -> dict[str, str]:
    if isinstance(block, str):  # read-all / write-all
        return {"*": block.removesuffix("-all")}
    return {str(k): str(v) for k, v in block.items()} if isinstance(block, dict) else {}


def pull_request_problems(files: Mapping[str, str]) -> list[str]:
    """Jobs a pull request starts run code from the pull request (a fork's, too): no secret, no id-token, no write."""
    problems = []
    for name, text in files.items():
        data = load(text)
        events = data["on"] if isinstance(data["on"], list | dict) else [data["on"]]
        if not PR_EVENTS & set(events):
            continue
        if "pull_request_target" in events:
            problems.append(f"{name}: pull_request_target runs with the base repository's secrets")
        top = _permissions(data.get("permissions"))
        for job_name, job in data.get("jobs", {}).items():
            where = f"{name}: job {job_name}"
            if "permissions" not in job and "permissions" not in data:
                problems.append(f"{where}: no permissions block, so the token gets the repository's defaults")
            granted = {**top, **_permissions(job.get("permissions"))}
            problems += [f"{where}: {scope}: write" for scope, level in granted.items() if level == "write"]
            if "id-token" in granted and granted["id-token"] != "none":
                problems.append(f"{where}: id-token: {granted['id-token']}")
            if any(SECRET.search(text) for text in _strings(job)) or job.get("secrets") == "inherit":
                problems.append(f"{where}: references secrets")
        if any(SECRET.search(text) for text in _strings({k: v for k, v in data.items() if k != "jobs"})):
            problems.append(f"{name}: references secrets outside its jobs")
    return problems


RUNS_AFTER_A_FAILURE = re.compile(r"!\s*cancelled\(\)|always\(\)|failure\(\)")


def skipped_with_a_failed_ancestor(files: Mapping[str, str]) -> list[str]:
    """A job that runs after a failed or skipped ancestor (``if: !cancelled()`` and the like) is there to run then;
    a job needing it without an ``if`` of its own is skipped all the same (GitHub's implicit ``success()`` looks at
    every ancestor), so whatever it delivers is lost exactly when it is needed."""
    problems = []
    for name, text in files.items():
        jobs = load(text).get("jobs", {})
        for job_name, job in jobs.items():
            needs = job.get("needs", [])
            for need in [needs] if isinstance(needs, str) else needs:
                if "if" not in job and RUNS_AFTER_A_FAILURE.search(str(jobs.get(need, {}).get("if", ""))):
                    problems.append(
                        f"{name}: job {job_name} needs {need}, which runs after failures, but has no `if:` of its own"
                    )
    return problems


# ---- the real workflows pass ---------------------------------------------------------------------------------------


@pytest.fixture
def produced(make_entry: EntryFactory) -> set[str]:
    """The fields of the matrix --matrix prints, from the function that makes it (a plan with work to do)."""
    decisions = [
        Decision(make_entry(), "build", "new", None, None, TargetState(None)),
        Decision(make_entry(version="2.0.0"), "skip", "up to date", None, None, TargetState(None)),
    ]
    jobs = job_matrix(decisions)["include"]
    assert jobs and all(set(job) == set(FIELDS) for job in jobs)
    return set(FIELDS)


def test_every_workflow_is_yaml_with_triggers_and_jobs() -> None:
    assert set(workflows()) >= {"ci-images.yml", "tests.yml", "images-pr.yml", "bump.yml", "build-images.yml"}
    for name, text in workflows().items():
        data = load(text)
        assert data.get("on") and data.get("jobs"), name


def test_every_nox_session_the_workflows_run_exists() -> None:
    assert nox_sessions() >= {"lint", "tests", "ci-images", "verify-images", "outdated", "bump", "docs"}
    runs = [m.group("name") for t in workflows().values() for m in NOX_RUN.finditer(t)]
    assert {"ci-images", "verify-images", "outdated", "bump", "docs", "lint", "workflow-lint"} <= set(runs)
    assert missing_nox_sessions(workflows()) == []


def test_every_matrix_field_the_workflows_read_is_made_by_matrix(produced: set[str]) -> None:
    readers = [name for name, text in workflows().items() if "outputs.matrix" in text and "matrix." in text]
    assert set(readers) >= {"ci-images.yml", "images-pr.yml"}
    assert matrix_fields_not_produced(workflows(), produced) == []


def test_pull_request_jobs_hold_no_secret_id_token_or_write_permission() -> None:
    pr_workflows = [n for n, t in workflows().items() if PR_EVENTS & set(load(t)["on"])]
    assert set(pr_workflows) >= {"tests.yml", "images-pr.yml"}
    assert pull_request_problems(workflows()) == []


def test_jobs_that_build_check_out_the_history() -> None:
    assert shallow_builds(workflows()) == []


@pytest.mark.parametrize("name", ["ci-images.yml", "images-pr.yml", "tests.yml", "build-images.yml"])
def test_a_shallow_checkout_of_a_building_job_is_caught(name: str) -> None:
    problems = shallow_builds(_broken(name, lambda t: re.sub(r"\n\s*fetch-depth: 0[^\n]*", "", t)))
    assert len(problems) == 1 and problems[0].startswith(f"{name}: job ")


def test_jobs_after_a_job_that_outlives_failures_say_when_they_run() -> None:
    assert skipped_with_a_failed_ancestor(workflows()) == []


def test_write_permissions_live_in_the_jobs_that_need_them() -> None:
    """contents and pull-requests write only where a pull request is opened; id-token only where images are signed."""
    writers: dict[str, set[str]] = {}
    for name, text in workflows().items():
        for job_name, job in load(text)["jobs"].items():
            for scope, level in _permissions(job.get("permissions")).items():
                if level == "write":
                    writers.setdefault(scope, set()).add(f"{name}:{job_name}")
        assert not _permissions(load(text).get("permissions")), f"{name}: top-level permissions must be {{}}"
    assert writers["contents"] == writers["pull-requests"] == {"bump.yml:bump", "ci-images.yml:deliver-lock"}
    assert writers["id-token"] == {"ci-images.yml:publish"}
    assert writers["packages"] == {"ci-images.yml:publish"}
    # Dispatching the checks of a pull request opened with the job token (which starts no workflow itself).
    assert writers["actions"] == {"bump.yml:checks", "ci-images.yml:lock-checks"}


# ---- each check catches a deliberately broken copy -------------------------------------------------------------


def _broken(name: str, change: Callable[[str], str]) -> dict[str, str]:
    files = workflows()
    changed = change(files[name])
    assert changed != files[name], "the breakage did not apply"
    return {**files, name: changed}


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("ci-images.yml", "nox -s verify-images", "nox -s verify-image"),
        ("bump.yml", "nox -s docs", "nox -s readme"),
        ("build-images.yml", "-s ci-images", "-s ci_images"),
    ],
)
def test_a_renamed_session_is_caught(name: str, old: str, new: str) -> None:
    problems = missing_nox_sessions(_broken(name, lambda t: t.replace(old, new)))
    assert len(problems) == 1 and new.rsplit(maxsplit=1)[-1] in problems[0]


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("images-pr.yml", "matrix.entries", "matrix.entry"),
        ("ci-images.yml", "matrix.image }}\n", "matrix.name }}\n"),
    ],
)
def test_a_matrix_field_that_matrix_does_not_make_is_caught(
    produced: set[str], name: str, old: str, new: str
) -> None:
    problems = matrix_fields_not_produced(_broken(name, lambda t: t.replace(old, new, 1)), produced)
    assert problems and all(new.split(".")[1].split(maxsplit=1)[0] in p for p in problems)


BREAKAGES = {  # name: (workflow, old text, new text, exactly the problems the check must find)
    "a secret": (
        "images-pr.yml",
        "IMAGE: ${{ matrix.image }}",
        "IMAGE: ${{ matrix.image }}\n          T: ${{ secrets.TOKEN }}",
        ["images-pr.yml: job build: references secrets"],
    ),
    "an id-token": (  # a write permission, and an id-token besides: both are named
        "images-pr.yml",
        "contents: read # check out the change\n    outputs",
        "contents: read\n      id-token: write\n    outputs",
        ["images-pr.yml: job plan: id-token: write", "images-pr.yml: job plan: id-token: write"],
    ),
    "a write permission": (
        "tests.yml",
        "contents: read # check out the code\n    steps",
        "contents: write\n    steps",
        ["tests.yml: job lint: contents: write"],
    ),
    "write-all": (
        "images-pr.yml",
        "permissions: {}\n",
        "permissions: write-all\n",
        ["images-pr.yml: job plan: *: write", "images-pr.yml: job build: *: write"],
    ),
    "pull_request_target": (
        "images-pr.yml",
        "  pull_request:\n",
        "  pull_request_target:\n",
        ["images-pr.yml: pull_request_target runs with the base repository's secrets"],
    ),
    "inherited secrets": (
        "tests.yml",
        "  lint:\n    name: Lint\n",
        "  lint:\n    name: Lint\n    secrets: inherit\n",
        ["tests.yml: job lint: references secrets"],
    ),
    "a secret outside the jobs": (
        "images-pr.yml",
        '  PIP_DISABLE_PIP_VERSION_CHECK: "1"\n',
        '  PIP_DISABLE_PIP_VERSION_CHECK: "1"\n  T: ${{ secrets.TOKEN }}\n',
        ["images-pr.yml: references secrets outside its jobs"],
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=list(BREAKAGES))
def test_a_pull_request_job_with_more_power_is_caught(breakage: tuple[str, str, str, list[str]]) -> None:
    name, old, new, expected = breakage
    assert pull_request_problems(_broken(name, lambda t: t.replace(old, new, 1))) == expected


def test_a_pull_request_job_without_a_permissions_block_is_caught() -> None:
    """No block in the job nor at the top: the token gets the repository's default permissions."""

    def strip(text: str) -> str:
        return text.replace("permissions: {}\n", "", 1).replace(
            "    permissions:\n      contents: read # check out the code\n", "", 1
        )

    assert pull_request_problems(_broken("tests.yml", strip)) == [
        "tests.yml: job lint: no permissions block, so the token gets the repository's defaults"
    ]


def test_the_session_list_comes_from_the_noxfile(tmp_path: Path) -> None:
    noxfile = tmp_path / "noxfile.py"
    noxfile.write_text(
        "import nox\n@nox.session\ndef plain(s): ...\n@nox.session(name='with-dash', python='3.11')\ndef other(s): ...\n"
        "def helper(): ...\n",
        encoding="utf-8",
    )
    assert nox_sessions(noxfile) == {"plain", "with-dash"}


def test_the_reusable_workflow_runs_the_tool_at_its_own_commit() -> None:
    """Not the caller's checkout nor a branch of this repository: the commit the caller's `uses:` resolved to."""
    text = workflows()["build-images.yml"]
    assert "repository: ${{ job.workflow_repository }}" in text and "ref: ${{ job.workflow_sha }}" in text
    # Keyless certificates name the called workflow: the tool must sign and verify as this repository.
    (step,) = [s for s in load(text)["jobs"]["images"]["steps"] if s.get("name") == "nox -s ci-images"]
    assert step["env"]["CI_IMAGES_SIGN_REPOSITORY"] == "${{ job.workflow_repository }}"
    assert set(load(text)["on"]) == {"workflow_call"}
    assert set(load(text)["on"]["workflow_call"]["inputs"]) == {
        "catalog",
        "images",
        "registry",
        "lock-file",
        "push",
        "sign",
    }


def test_a_job_that_would_be_skipped_after_a_failed_publish_is_caught() -> None:
    """The lock file's pull request must still open when one image's publish job failed and the others moved tags."""
    guard = "    if: ${{ !cancelled() && needs.lock.result == 'success' }}\n"
    problems = skipped_with_a_failed_ancestor(_broken("ci-images.yml", lambda t: t.replace(guard, "", 1)))
    assert problems == [
        "ci-images.yml: job deliver-lock needs lock, which runs after failures, but has no `if:` of its own"
    ]


# ---- keyless jobs attest what they sign ---------------------------------------------------------------------------


def keyless_jobs_that_do_not_attest(files: Mapping[str, str]) -> list[str]:
    """Every step that signs keyless (CI_IMAGES_SIGN_KEYLESS) attests too: push-images attaches provenance and SBOMs
    through `cosign attest` unless told not to (--no-attest, CI_IMAGES_NO_ATTEST), with cosign installed by an
    earlier step of its job and the job's OIDC token (id-token: write) when it pushes."""
    problems = []
    for name, text in files.items():
        for job_name, job in load(text).get("jobs", {}).items():
            steps = job.get("steps", [])
            for index, step in enumerate(steps):
                env = step.get("env") or {}
                run = str(step.get("run", ""))
                if "CI_IMAGES_SIGN_KEYLESS" not in env or not NOX_RUN.search(run):
                    continue
                where = f"{name}: job {job_name}"
                if "--no-attest" in run or "CI_IMAGES_NO_ATTEST" in env:
                    problems.append(f"{where} signs keyless but turns attestations off")
                if not any("cosign-installer" in str(s.get("uses", "")) for s in steps[:index]):
                    problems.append(f"{where} runs cosign before installing it")
                pushes = "--push" in run or "PUSH" in env
                if pushes and _permissions(job.get("permissions")).get("id-token", "write") != "write":
                    problems.append(f"{where} attests keyless without id-token: write")
    return problems


def test_keyless_jobs_attest_what_they_sign() -> None:
    assert keyless_jobs_that_do_not_attest(workflows()) == []


@pytest.mark.parametrize(
    ("name", "old", "new", "problem"),
    [
        (
            "ci-images.yml",
            '          CI_IMAGES_SIGN_KEYLESS: "1"\n        run: nox -s ci-images -- --push',
            '          CI_IMAGES_SIGN_KEYLESS: "1"\n          CI_IMAGES_NO_ATTEST: "1"\n        run: nox -s ci-images -- --push',
            "ci-images.yml: job publish signs keyless but turns attestations off",
        ),
        (
            "build-images.yml",
            "-s ci-images -- ${IMAGES:+",
            "-s ci-images -- --no-attest ${IMAGES:+",
            "build-images.yml: job images signs keyless but turns attestations off",
        ),
        (
            "ci-images.yml",
            "      id-token: write # keyless signing",
            "      id-token: none # keyless signing",
            "ci-images.yml: job publish attests keyless without id-token: write",
        ),
    ],
)
def test_a_keyless_job_that_would_not_attest_is_caught(name: str, old: str, new: str, problem: str) -> None:
    assert keyless_jobs_that_do_not_attest(_broken(name, lambda t: t.replace(old, new, 1))) == [problem]
