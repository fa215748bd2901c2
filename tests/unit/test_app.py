"""Settings resolution of the front doors: target registry, mirror scheme, lock file location."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_images import app
from ci_images.catalog.load import load_catalog
from ci_images.errors import UsageError
from ci_images.smoke import KINDS

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_plain_http_mirror_only_for_loopback() -> None:
    assert app._plain_http_mirror({"CI_IMAGES_UPSTREAM_MIRROR": "http://127.0.0.1:5001"}) == "127.0.0.1:5001"
    assert app._plain_http_mirror({"CI_IMAGES_UPSTREAM_MIRROR": "https://127.0.0.1:5001"}) is None
    assert app._plain_http_mirror({"CI_IMAGES_UPSTREAM_MIRROR": "mirror.example.com"}) is None
    with pytest.raises(UsageError) as raised:
        app._plain_http_mirror({"CI_IMAGES_UPSTREAM_MIRROR": "http://mirror.example.com"})
    assert raised.value.exit_code == 2


def test_target_prefix_precedence_and_local() -> None:
    catalog = load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS)
    env = {"CI_IMAGES_REGISTRY": "registry.example.com/team"}
    assert app.target_prefix(app.Options(env={}), catalog, start_local=False) == (
        "ghcr.io/getsops/ci-container-images",
        False,
    )
    assert (
        app.target_prefix(app.Options(env=env), catalog, start_local=False)[0] == "registry.example.com/team"
    )
    opts = app.Options(registry="other.example.com/x", env=env)
    assert app.target_prefix(opts, catalog, start_local=False)[0] == "other.example.com/x"
    local = app.Options(registry="local", env=env)
    assert app.target_prefix(local, catalog, start_local=False) == (
        "127.0.0.1:5000/getsops/ci-container-images",
        True,
    )
    with pytest.raises(UsageError):
        app.target_prefix(
            app.Options(registry="ghcr.io/x", plain_http=True, env={}), catalog, start_local=False
        )


def test_local_pushes_keep_their_lock_file_out_of_the_repository(tmp_path: Path) -> None:
    catalog = load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS)
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert app.lock_file(app.Options(env=env), catalog) == REPO_ROOT / "images.lock.json"
    assert app.lock_file(app.Options(registry="local", env=env), catalog) == (
        tmp_path / "ci-images" / "local-registry" / "images.lock.json"
    )
    assert app.lock_file(app.Options(lock_path="x.json", env=env), catalog) == Path("x.json")
