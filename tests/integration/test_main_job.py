"""The front doors end to end, as a user runs them: the shipped catalog, `--registry local`, no reachable upstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ci_images import app
from ci_images.catalog.load import load_catalog
from ci_images.engine.client import Engine
from ci_images.loopback.local import stop_local_registry
from ci_images.registry.client import RegistryClient
from ci_images.registry.oci import platform_digests
from ci_images.smoke import KINDS

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(lab: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **lab.env(), "CI": "true", "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    env.pop("GITHUB_ACTIONS", None)
    return env


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci_images", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_shipped_catalog_builds_and_passes_smoke_tests_on_amd64_and_arm64(lab: Any, tmp_path: Path) -> None:
    """invoke build-images then invoke test-images, on every (image, variant, version) of images.yaml."""
    env = {**lab.env(), "CI": "true"}
    opts = app.Options(catalog=str(REPO_ROOT / "images.yaml"), env=env, jobs=2)
    built = app.build_images(opts)
    assert {r.action for r in built} == {"built"}
    catalog = load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS)
    expected = {
        (spec.name, v.name, version)
        for spec in catalog.images
        for v in spec.variants
        for version in spec.versions
    }
    assert {(r.image, r.variant, r.version) for r in built} == expected
    engine = Engine.connect()
    host = engine.host_platform()
    for result in built:
        for ref in result.tags:
            assert engine.has_image(ref), ref
            assert engine.image_platform(ref) == host
            assert engine.image_labels(ref)["org.opencontainers.image.version"] == result.version
    tested = app.test_images(opts)
    assert {r.action for r in tested} == {"tested"}
    assert all(set(r.smoked) == {"linux/amd64", "linux/arm64"} for r in tested)


def test_main_job_pushes_to_the_embedded_local_registry(lab: Any, tmp_path: Path) -> None:
    env = _env(lab, tmp_path)
    try:
        result = _cli(
            [
                "ci",
                "--push",
                "--registry",
                "local",
                "--images",
                "vault:2.0.0",
                "--json",
                str(tmp_path / "r.json"),
            ],
            env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        records = json.loads((tmp_path / "r.json").read_text())
        assert [r["action"] for r in records] == ["built"]
        assert records[0]["tags"][0].startswith("127.0.0.1:5000/")
        client = RegistryClient("127.0.0.1:5000", plain_http=True)
        repo = records[0]["tags"][0].split("/", 1)[1].rsplit(":", 1)[0]
        assert set(platform_digests(client, repo, "2.0.0")) == {"linux/amd64", "linux/arm64"}
        lock = tmp_path / "cache" / "ci-images" / "local-registry" / "images.lock.json"
        assert records[0]["tags"][0] in json.loads(lock.read_text())["images"]
        assert lab.target.password not in result.stdout + result.stderr
    finally:
        stop_local_registry(tmp_path / "cache" / "ci-images")


def test_main_job_without_a_reachable_upstream_stops_early_and_says_how_to_fix_it(
    lab: Any, tmp_path: Path
) -> None:
    env = _env(lab, tmp_path)
    env.pop("CI_IMAGES_UPSTREAM_MIRROR")
    env["CI_IMAGES_UPSTREAM_MIRROR"] = "127.0.0.1:9"  # discard port: nothing listens
    result = _cli(["ci"], env)
    assert result.returncode == 3
    assert "cannot reach the upstream registry 127.0.0.1:9" in result.stderr
    assert "CI_IMAGES_UPSTREAM_MIRROR" in result.stderr
    assert "Traceback" not in result.stderr
    assert "building" not in result.stderr


def test_plan_and_matrix_only_read(lab: Any, tmp_path: Path) -> None:
    env = _env(lab, tmp_path)
    target_before = len(lab.target.requests())
    upstream_before = len(lab.upstream.requests())
    plan = _cli(["plan", "--json", "--images", "local-kms"], env)
    assert plan.returncode == 0, plan.stderr[-2000:]
    records = json.loads(plan.stdout)
    assert {r["action"] for r in records} <= {"build", "skip", "retag"}
    matrix = _cli(["ci", "--matrix"], env)
    assert matrix.returncode == 0, matrix.stderr[-2000:]
    include = json.loads(matrix.stdout)["include"]
    assert all(set(job) == {"image", "entries"} for job in include)
    writes = [m for m, _ in lab.target.requests()[target_before:] if m in {"PUT", "POST", "PATCH", "DELETE"}]
    assert writes == []
    gets = [u for m, u in lab.upstream.requests()[upstream_before:] if m == "GET" and "/manifests/" in u]
    assert gets == []
