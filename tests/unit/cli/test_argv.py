"""The front doors on a bad or good catalog: `python -m ci_images list` and `invoke list-images` (no engine, no network)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from ci_images.cli.argv import main
from tests.doors import clean_env, run_door
from tests.unit.conftest import CatalogFiles

MAIN = Path(__file__).resolve().parents[3]
ROW_KEYS = {
    "image",
    "variant",
    "version",
    "mode",
    "source",
    "tags",
    "platforms",
    "smoke",
    "builds",
    "builds_reason",
}
BAD_CATALOG = 'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0", 1.10]\n'  # 1.10 at 4:25
GOOD_CATALOG = """
registry: 127.0.0.1:5000/ci
images:
  tool:
    source: acme/tool
    versions: ["1.0.0", "1.1.0"]
    platforms: [linux/amd64]
"""


def run(argv: Sequence[str], **env: str) -> subprocess.CompletedProcess[str]:
    kind = "invoke" if argv[:2] == ["-m", "invoke"] else "module"
    return run_door(kind, argv[2:], clean_env(**env))


def assert_catalog_error(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert f"{path}:4:25: images.a.versions[1] must be a string" in output
    assert 'fix: quote it: "1.10"' in output
    assert "Traceback" not in output
    assert proc.stdout == ""  # nothing listed


def test_module_list_bad_catalog_exits_2(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(BAD_CATALOG)
    assert_catalog_error(run(["-m", "ci_images", "list", "--catalog", str(path)]), path)


def test_module_list_bad_catalog_from_environment(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(BAD_CATALOG)
    assert_catalog_error(run(["-m", "ci_images", "list"], CI_IMAGES_CATALOG=str(path)), path)


def test_invoke_list_images_bad_catalog_exits_2(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(BAD_CATALOG)
    assert_catalog_error(run(["-m", "invoke", "list-images", "--catalog", str(path)]), path)


def test_module_list_json_rows(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(GOOD_CATALOG)
    proc = run(["-m", "ci_images", "list", "--json"], CI_IMAGES_CATALOG=str(path))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and len(rows) == 2
    assert all(set(row) == ROW_KEYS for row in rows)
    assert rows[1] == {
        "image": "tool",
        "variant": "plain",
        "version": "1.1.0",
        "mode": "mirror",
        "source": "docker.io/acme/tool:1.1.0",
        "tags": [
            "127.0.0.1:5000/ci/tool:1.1.0",
            "127.0.0.1:5000/ci/tool:1.1",
            "127.0.0.1:5000/ci/tool:latest",
        ],
        "platforms": ["linux/amd64"],
        "smoke": None,
        "builds": "mirror",
        "builds_reason": "copied from upstream registry to registry, byte for byte",
    }


def test_invoke_list_images_json_shipped_catalog() -> None:
    proc = run(["-m", "invoke", "list-images", "--json"])
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 12
    assert all(set(row) == ROW_KEYS for row in rows)
    # The tags SOPS' tests pull, with the upstream each comes from.
    sources = {(r["image"], r["variant"], r["version"]): r["source"] for r in rows}
    assert sources[("local-kms", "plain", "3.11.1")] == "docker.io/nsmithuk/local-kms:3.11.1"
    assert sources[("vault", "plain", "1.10.0")] == "docker.io/library/vault:1.10.0"
    assert sources[("vault", "plain", "1.14.10")] == "docker.io/hashicorp/vault:1.14.10"
    mirrors = {r["tags"][0]: r for r in rows if r["mode"] == "mirror"}
    assert set(mirrors) == {
        "ghcr.io/getsops/ci-container-images/mirror/nsmithuk/local-kms:3.11.1",
        "ghcr.io/getsops/ci-container-images/mirror/library/vault:1.10.0",
    }
    assert all(r["platforms"] == ["all"] and len(r["tags"]) == 1 for r in mirrors.values())
    # Each entry's smoke test, probe by probe: the built-in named by the catalog, with its settings.
    probes = {
        (r["image"], r["variant"]): [p["name"] for p in r["smoke"]["probes"]] for r in rows if r["smoke"]
    }
    assert probes[("local-kms", "seeded")] == ["kms"] and probes[("vault", "plain")] == ["vault"]
    assert rows[0]["smoke"] == {
        "port": None,
        "port_env": {},
        "env": {},
        "timeout": 180.0,
        "probes": [{"type": "named", "name": "kms", "timeout": 180.0}],
    }


def test_invoke_list_images_table_shows_the_sops_tags_and_their_sources() -> None:
    proc = run(["-m", "invoke", "list-images", "--images", "local-kms:3.11.1,vault:1.10.0"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("3.11.1" in line and "docker.io/nsmithuk/local-kms:3.11.1" in line for line in lines)
    assert any(
        "1.10.0" in line and "docker.io/library/vault:1.10.0" in line and "vault:1.10.0," in line
        for line in lines
    )


# In-process: the same door, faster, for the cases that do not need a fresh interpreter.


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("CI_IMAGES_", "GITHUB_")):
            monkeypatch.delenv(key)


@pytest.mark.usefixtures("quiet_env")
def test_main_missing_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--catalog", str(tmp_path / "missing.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: catalog" in captured.err and "not found" in captured.err and "fix:" in captured.err


@pytest.mark.usefixtures("quiet_env")
def test_main_bad_catalog_debug_shows_traceback(
    catalog_files: CatalogFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    path = catalog_files.write(BAD_CATALOG)
    assert main(["list", "--catalog", str(path), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and f"{path}:4:25" in err


@pytest.mark.usefixtures("quiet_env")
def test_main_list_text(catalog_files: CatalogFiles, capsys: pytest.CaptureFixture[str]) -> None:
    path = catalog_files.write(GOOD_CATALOG)
    assert main(["list", "--catalog", str(path), "--images", "tool:1.1.0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].split()[:5] == ["tool", "plain", "1.1.0", "mirror", "docker.io/acme/tool:1.1.0"]
    assert "127.0.0.1:5000/ci/tool:latest" in out[0]


@pytest.mark.usefixtures("quiet_env")
def test_main_images_matching_nothing(
    catalog_files: CatalogFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    path = catalog_files.write(GOOD_CATALOG)
    assert main(["list", "--catalog", str(path), "--images", "nope"]) == 2
    assert "matches nothing" in capsys.readouterr().err


@pytest.mark.usefixtures("quiet_env")
def test_main_registry_option_overrides_catalog(
    catalog_files: CatalogFiles, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = catalog_files.write(GOOD_CATALOG)
    monkeypatch.setenv("CI_IMAGES_REGISTRY", "ghcr.io/from/env")
    assert main(["list", "--json", "--catalog", str(path), "--registry", "ghcr.io/from/option"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["tags"][0] == "ghcr.io/from/option/tool:1.0.0"
    assert main(["list", "--json", "--catalog", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tags"][0] == "ghcr.io/from/env/tool:1.0.0"


@pytest.mark.parametrize("door", ["invoke", "module"])
def test_registry_down_ignores_a_target_registry_from_the_environment(door: str, tmp_path: Path) -> None:
    """After `eval "$(invoke lab-up)"` CI_IMAGES_REGISTRY names the lab's target: registry-down still means `local`."""
    env = clean_env(CI_IMAGES_REGISTRY="127.0.0.1:5999/ci", XDG_CACHE_HOME=str(tmp_path))
    proc = run_door(door, ["registry-down"], env)
    assert proc.returncode == 0, proc.stderr
    assert "no local registry was running" in proc.stderr


@pytest.mark.parametrize("door", ["invoke", "module"])
def test_registry_down_refuses_a_registry_it_cannot_stop(door: str, tmp_path: Path) -> None:
    proc = run_door(
        door, ["registry-down", "--registry", "ghcr.io/a/b"], clean_env(XDG_CACHE_HOME=str(tmp_path))
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: --registry 'ghcr.io/a/b': is not the embedded local registry; "
        "fix: give local or local:PORT (registry-down stops only that one)"
    )


def test_an_unknown_flag_points_at_the_commands_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["ci", "--bogus", "x"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "error: unrecognized arguments: --bogus x (see `python -m ci_images ci --help`)\n"
    )
