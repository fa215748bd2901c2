"""The front doors end to end, as a user runs them: the shipped catalog, `--registry local`, no reachable upstream."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from ci_images.catalog.load import load_catalog
from ci_images.commands import images as image_commands
from ci_images.commands.options import BUILD, parse_options
from ci_images.engine.client import Engine
from ci_images.loopback.local import stop_local_registry
from ci_images.oci import free_loopback_port
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import platform_digests
from ci_images.smoke import KINDS
from tests.doors import clean_env, run_door

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(lab: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    # extra may override the lab's own settings (e.g. CI_IMAGES_REGISTRY): merged first, not passed twice.
    return clean_env(**{**lab.env(), "CI": "true", "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra})


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_door("module", args, env, timeout=1800)


def test_shipped_catalog_builds_and_passes_smoke_tests_on_amd64_and_arm64(lab: Any, tmp_path: Path) -> None:
    """invoke build-images then invoke test-images, on every (image, variant, version) of images.yaml."""
    env = {**lab.env(), "CI": "true"}
    opts = parse_options(BUILD, {"catalog": str(REPO_ROOT / "images.yaml"), "jobs": "2"}, env)
    built = image_commands.build_images(opts)
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
    tested = image_commands.test_images(opts)
    assert {r.action for r in tested} == {"tested"}
    assert all(set(r.smoked) == {"linux/amd64", "linux/arm64"} for r in tested)


def test_main_job_pushes_to_the_embedded_local_registry(lab: Any, tmp_path: Path) -> None:
    """On a port of its own: the README's main job may have left the default local registry running on 5000."""
    env = _env(lab, tmp_path)
    port = free_loopback_port()
    try:
        result = _cli(
            [
                "ci",
                "--push",
                "--registry",
                f"local:{port}",
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
        assert records[0]["tags"][0].startswith(f"127.0.0.1:{port}/")
        client = RegistryClient(f"127.0.0.1:{port}", plain_http=True)
        repo = records[0]["tags"][0].split("/", 1)[1].rsplit(":", 1)[0]
        assert set(platform_digests(client, repo, "2.0.0")) == {"linux/amd64", "linux/arm64"}
        lock = tmp_path / "cache" / "ci-images" / "local-registry" / str(port) / "images.lock.json"
        assert records[0]["tags"][0] in json.loads(lock.read_text())["images"]
        assert lab.target.password not in result.stdout + result.stderr
        # `invoke registry-down` stops it; CI_IMAGES_REGISTRY=local:PORT names the port as --registry would.
        down = run_door("invoke", ["registry-down"], {**env, "CI_IMAGES_REGISTRY": f"local:{port}"})
        assert down.returncode == 0, down.stderr
        assert f"stopped the local registry on port {port}" in down.stderr
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5)
    finally:
        stop_local_registry(tmp_path / "cache" / "ci-images", port)


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
    # The README's line, on a port of its own: it stops the same way, and starts no embedded registry.
    port = free_loopback_port()
    try:
        pushed = _cli(["ci", "--push", "--registry", f"local:{port}"], env)
        assert pushed.returncode == 3, pushed.stderr[-2000:]
        assert "cannot reach the upstream registry 127.0.0.1:9" in pushed.stderr
        assert not (
            tmp_path / "cache" / "ci-images" / "local-registry" / str(port) / "registry.json"
        ).exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5)
    finally:
        stop_local_registry(tmp_path / "cache" / "ci-images", port)


def test_plan_and_matrix_only_read(lab: Any, tmp_path: Path) -> None:
    """A target path nothing was pushed to: every entry plans as a build, and the matrix holds exactly those."""
    env = _env(lab, tmp_path, CI_IMAGES_REGISTRY=f"{lab.target.host}/fresh-{tmp_path.name[-8:].lower()}")
    target_before = len(lab.target.requests())
    upstream_before = len(lab.upstream.requests())
    plan = _cli(["plan", "--json"], env)
    assert plan.returncode == 0, plan.stderr[-2000:]
    records = json.loads(plan.stdout)
    shipped = load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS)
    assert len(records) == sum(len(s.versions) * len(s.variants) for s in shipped.images)
    assert {(r["image"], r["action"]) for r in records} == {(s.name, s.mode) for s in shipped.images}
    matrix = _cli(["ci", "--matrix"], env)
    assert matrix.returncode == 0, matrix.stderr[-2000:]
    include = json.loads(matrix.stdout)["include"]
    expected: dict[str, list[str]] = {}
    for r in records:
        expected.setdefault(r["image"], []).append(f"{r['image']}/{r['variant']}/{r['version']}")
    assert include == [{"image": image, "entries": keys} for image, keys in expected.items()]
    writes = [m for m, _ in lab.target.requests()[target_before:] if m in {"PUT", "POST", "PATCH", "DELETE"}]
    assert writes == []
    gets = [u for m, u in lab.upstream.requests()[upstream_before:] if m == "GET" and "/manifests/" in u]
    assert gets == []
