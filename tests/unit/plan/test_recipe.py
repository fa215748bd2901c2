"""The recipe hash covers exactly what determines an image's content; labels carry it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ci_images.catalog.probes import HealthcheckProbe, SmokeSpec, TcpProbe
from ci_images.plan.recipe import RECIPE_LABEL, SOURCE_DIGEST_LABEL, image_labels, mirror_recipe, recipe_hash
from ci_images.run import settings as run_settings
from ci_images.run.settings import created_timestamp
from tests.unit.conftest import EntryFactory

BASE = "sha256:" + "1" * 64
OTHER_BASE = "sha256:" + "2" * 64


def test_recipe_hash_is_stable_and_well_formed(make_entry: EntryFactory) -> None:
    entry = make_entry()
    first = recipe_hash(entry, BASE)
    assert first == recipe_hash(entry, BASE)
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64


def test_recipe_hash_is_stable_across_processes(make_entry: EntryFactory) -> None:
    # Guards against anything run-dependent (hash randomisation, set order, absolute paths) leaking in.
    entry = make_entry()
    assert entry.context is not None
    script = (
        "import sys; from ci_images.plan.recipe import recipe_hash; from ci_images.plan.entries import Entry; "
        "from ci_images.catalog.refs import parse_repository as p; from pathlib import Path; c = Path(sys.argv[1]); "
        "e = Entry('local-kms', 'plain', '3.11.7', 'build', p('nsmithuk/local-kms'), p('nsmithuk/local-kms'), "
        "p('registry.example.test/team/local-kms'), ('3.11.7', '3.11', 'latest'), ('linux/amd64', 'linux/arm64'), "
        "c, c / 'Dockerfile', {}, 'kms', 'local-kms', 'x'); print(recipe_hash(e, sys.argv[2]))"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", script, str(entry.context), BASE],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert hashes == {recipe_hash(entry, BASE)}


def test_recipe_hash_does_not_depend_on_where_the_context_lives(
    make_entry: EntryFactory, tmp_path: Path
) -> None:
    entry = make_entry()
    assert entry.context is not None
    moved = tmp_path / "elsewhere" / "ctx"
    moved.parent.mkdir()
    entry.context.rename(moved)
    moved_entry = replace(entry, context=moved, dockerfile=moved / "Dockerfile")
    other = make_entry()  # a fresh context with the same files
    assert recipe_hash(moved_entry, BASE) == recipe_hash(other, BASE)


def test_recipe_changes_with_context_files(make_entry: EntryFactory) -> None:
    entry = make_entry()
    assert entry.context is not None
    before = recipe_hash(entry, BASE)
    script = entry.context / "init.sh"
    script.write_text("#!/bin/sh\necho bye\n", encoding="utf-8")
    after_edit = recipe_hash(entry, BASE)
    assert after_edit != before
    script.chmod(0o755)
    after_chmod = recipe_hash(entry, BASE)
    assert after_chmod != after_edit
    (entry.context / "seeds").mkdir()
    (entry.context / "seeds" / "seed.yaml").write_text("Keys: []\n", encoding="utf-8")
    after_add = recipe_hash(entry, BASE)
    assert after_add != after_chmod
    (entry.context / "seeds" / "seed.yaml").rename(entry.context / "seeds" / "seed2.yaml")
    assert recipe_hash(entry, BASE) != after_add  # a rename alone changes the recipe


def test_recipe_changes_with_dockerfile(make_entry: EntryFactory) -> None:
    entry = make_entry()
    assert entry.dockerfile is not None
    before = recipe_hash(entry, BASE)
    entry.dockerfile.write_text(entry.dockerfile.read_text() + "EXPOSE 8080\n", encoding="utf-8")
    assert recipe_hash(entry, BASE) != before


def test_recipe_ignores_vcs_and_cache_folders(make_entry: EntryFactory) -> None:
    entry = make_entry()
    assert entry.context is not None
    before = recipe_hash(entry, BASE)
    for folder in (".git", "__pycache__"):
        (entry.context / folder).mkdir()
        (entry.context / folder / "junk").write_text("x", encoding="utf-8")
    assert recipe_hash(entry, BASE) == before


def test_recipe_changes_with_build_args_base_and_platforms(make_entry: EntryFactory) -> None:
    entry = make_entry(build_args={"KMS_SEED": "a"})
    base = recipe_hash(entry, BASE)
    variants = {
        "arg value": recipe_hash(replace(entry, build_args={"KMS_SEED": "b"}), BASE),
        "arg added": recipe_hash(replace(entry, build_args={"KMS_SEED": "a", "X": ""}), BASE),
        "no args": recipe_hash(replace(entry, build_args={}), BASE),
        "base digest": recipe_hash(entry, OTHER_BASE),
        "platforms": recipe_hash(replace(entry, platforms=("linux/amd64",)), BASE),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_recipe_ignores_labels_time_and_order(
    make_entry: EntryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_entry(build_args={"A": "1", "B": "2"})
    before = recipe_hash(entry, BASE)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    same = [
        replace(entry, title="other", description="other"),
        replace(entry, version="3.12.0", tags=("3.12.0",), variant="seeded"),
        replace(entry, build_args={"B": "2", "A": "1"}),
        replace(entry, platforms=("linux/arm64", "linux/amd64")),
    ]
    assert {recipe_hash(e, BASE) for e in same} == {before}


def test_the_smoke_test_is_not_part_of_the_recipe(make_entry: EntryFactory) -> None:
    """A decision (README, Smoke probes): a changed `smoke:` neither rebuilds nor republishes an unchanged image (nor
    could a byte-exact mirror record it); `push-images --force` tests the image again under the new probes."""
    entry = make_entry()
    stricter = SmokeSpec(probes=(TcpProbe(5432, 60.0), HealthcheckProbe(30.0)), port=5432, env={"MODE": "ci"})
    assert {recipe_hash(replace(entry, smoke=s), BASE) for s in (entry.smoke, stricter, None)} == {
        recipe_hash(entry, BASE)
    }
    mirror = make_entry(mode="mirror")
    assert mirror_recipe(replace(mirror, smoke=stricter), BASE) == mirror_recipe(mirror, BASE)


def test_recipe_of_a_mirror_is_refused(make_entry: EntryFactory) -> None:
    with pytest.raises(ValueError, match="mirrored"):
        recipe_hash(make_entry(mode="mirror"), BASE)


def test_mirror_recipe(make_entry: EntryFactory) -> None:
    entry = make_entry(mode="mirror")
    first = mirror_recipe(entry, BASE)
    assert first == mirror_recipe(replace(entry, title="x", platforms=entry.platforms[::-1]), BASE)
    assert mirror_recipe(entry, OTHER_BASE) != first
    assert mirror_recipe(replace(entry, platforms=("linux/amd64",)), BASE) != first


def test_image_labels(make_entry: EntryFactory) -> None:
    entry = make_entry()
    labels = image_labels(
        entry,
        source_digest=BASE,
        recipe="sha256:" + "9" * 64,
        revision="abc",
        source_url="https://github.com/acme/ci",
        created="2024-01-01T00:00:00Z",
    )
    assert labels[SOURCE_DIGEST_LABEL] == BASE
    assert labels[RECIPE_LABEL] == "sha256:" + "9" * 64
    assert labels["org.opencontainers.image.base.name"] == "docker.io/nsmithuk/local-kms:3.11.7"
    assert labels["org.opencontainers.image.version"] == "3.11.7"
    assert labels["org.opencontainers.image.revision"] == "abc"
    assert labels["org.opencontainers.image.source"] == "https://github.com/acme/ci"
    assert labels["org.opencontainers.image.created"] == "2024-01-01T00:00:00Z"


def test_created_timestamp() -> None:
    assert created_timestamp({"SOURCE_DATE_EPOCH": "0"}) == "1970-01-01T00:00:00Z"
    assert created_timestamp({"SOURCE_DATE_EPOCH": "1700000000"}) == "2023-11-14T22:13:20Z"
    now = created_timestamp({"SOURCE_DATE_EPOCH": "soon"})
    assert len(now) == 20 and now.endswith("Z")


def test_repository_revision_and_url(tmp_path: Path) -> None:
    assert run_settings.repository_revision(tmp_path, {"GITHUB_SHA": "c0ffee"}) == "c0ffee"
    assert run_settings.repository_revision(tmp_path, {}) == "unknown"  # not a git checkout
    assert run_settings.repository_url({}, "https://default") == "https://default"
    assert (
        run_settings.repository_url(
            {"GITHUB_REPOSITORY": "acme/ci", "GITHUB_SERVER_URL": "https://ghe.test"}, "x"
        )
        == "https://ghe.test/acme/ci"
    )
    assert run_settings.repository_url({"GITHUB_REPOSITORY": "acme/ci"}, "x") == "https://github.com/acme/ci"
