"""Assembled entries end to end in the lab: no engine build, the same digests from two checkouts, smoke tests on what
consumers pull, build-images and test-images through the staging registry, and verify-images --rebuild.

The catalogs live in git repositories made here, with fixed commit times, so the assembled images' time and revision
come from git as they do in this repository.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ci_images.commands import images as image_commands
from ci_images.commands import signing
from ci_images.commands.options import BUILD, PUSH, TEST, VERIFY, Options, parse_options
from ci_images.commands.setup import prepare
from ci_images.engine.client import Engine
from ci_images.errors import CiImagesError, SigningError
from ci_images.lab.lab import put_tags
from ci_images.oci import OCI_INDEX, canonical_json, sha256_digest
from ci_images.registry import documents
from ci_images.run.build import local_ref
from ci_images.run.result import Result
from tests.doors import clean_env, run_door

from .conftest import target_client

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT_TIME = 1_714_564_800  # 2024-05-01T12:00:00Z: what every assembled image of these repositories records
COMMIT_CREATED = "2024-05-01T12:00:00Z"
# No smoke tests here (amd64 and arm64 alike): this catalog is about the bytes.
CATALOG = """\
registry: {target}/{path}
upstream_mirror: {upstream}
platforms: [linux/amd64, linux/arm64]
images:
  local-kms:
    source: docker.io/nsmithuk/local-kms
    versions: ["3.11.7"]
    build: images/local-kms
    smoke: null
    variants:
      seeded:
        build_args: {{KMS_SEED: sops-test}}
  vault:
    source: docker.io/hashicorp/vault
    versions: ["2.0.0"]
    build: images/vault
    smoke: null
"""


def git(folder: Path, *args: str, umask: int = 0o022) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_AUTHOR_DATE": f"@{COMMIT_TIME} +0000",
        "GIT_COMMITTER_DATE": f"@{COMMIT_TIME} +0000",
    }
    # The umask through a shell: git makes the checkout's files with it, as a user's shell would.
    subprocess.run(
        ["sh", "-c", f'umask {umask:03o} && exec git -C "$0" "$@"', str(folder), *args],
        check=True,
        capture_output=True,
        env=env,
    )


def origin_repository(root: Path, lab: Any, catalog: str = CATALOG) -> Path:
    """A git repository with images/ (the shipped build folders) and a catalog for the lab, committed."""
    origin = root / "origin"
    shutil.copytree(REPO_ROOT / "images", origin / "images")
    path = f"assembled-{secrets.token_hex(3)}"
    text = catalog.format(target=lab.target.host, path=path, upstream=lab.upstream.host)
    (origin / "images.yaml").write_text(text, encoding="utf-8")
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "catalog")
    return origin


def clone(origin: Path, destination: Path, *, umask: int, mtime: float | None = None) -> Path:
    """A checkout of ``origin`` made under ``umask``, its files' times set to ``mtime`` when given."""
    git(origin.parent, "clone", "-q", str(origin), str(destination), umask=umask)
    if mtime is not None:
        for path in destination.rglob("*"):
            if ".git" not in path.parts:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
    return destination


def options(checkout: Path, lab: Any, command: str = PUSH, **given: Any) -> Options:
    env = {**lab.env(), "CI": "true"}
    env.pop("CI_IMAGES_REGISTRY", None)  # the catalog names the target
    env.pop("SOURCE_DATE_EPOCH", None)
    defaults: dict[str, Any] = {"catalog": str(checkout / "images.yaml")}
    if command in (PUSH, VERIFY):
        defaults["lock"] = str(checkout / "images.lock.json")
    parsed: Options = parse_options(command, {**defaults, **given}, env)
    return parsed


def repo_and_tag(ref: str) -> tuple[str, str]:
    repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
    return repo, tag


@pytest.fixture(scope="module")
def checkouts(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two checkouts of one commit: one made under umask 022 with git's file times, one under umask 077 with every
    file's time moved a year on."""
    root = tmp_path_factory.mktemp("assembled")
    origin = origin_repository(root, lab)
    first = clone(origin, root / "first", umask=0o022)
    second = clone(origin, root / "second", umask=0o077, mtime=COMMIT_TIME + 365 * 86400)
    assert (second / "images" / "vault" / "Dockerfile").stat().st_mode & 0o777 == 0o600
    return first, second


@pytest.fixture(scope="module")
def published(lab: Any, checkouts: tuple[Path, Path]) -> list[Result]:
    """The first checkout's catalog pushed with no engine at all: asking for one fails the run."""
    first, _ = checkouts

    def no_engine() -> Engine:
        raise AssertionError("an assembled entry without smoke tests must not need the engine")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ci_images.commands.setup.engine_factory", no_engine)
        return image_commands.push_images(options(first, lab))


def test_every_built_entry_is_assembled_and_published_with_no_engine_build(
    lab: Any, checkouts: tuple[Path, Path], published: list[Result]
) -> None:
    first, _ = checkouts
    assert [(r.key, r.action, r.built) for r in published] == [
        ("local-kms/plain/3.11.7", "built", "assembled"),
        ("local-kms/seeded/3.11.7", "built", "assembled"),
        ("vault/plain/2.0.0", "built", "assembled"),
    ]
    lock = json.loads((first / "images.lock.json").read_text())["images"]
    client = target_client(lab)
    for result in published:
        for ref in result.tags:
            assert lock[ref]["built"] == "assembled" and lock[ref]["digest"] == result.digest
        repo, tag = repo_and_tag(result.tags[0])
        held = documents.read_held(client, repo, tag)
        assert held is not None and set(held.platforms) == {"linux/amd64", "linux/arm64"}
        assert held.labels["io.github.ci-images.built"] == "assembled"
        assert (
            held.labels["org.opencontainers.image.created"] == COMMIT_CREATED
        )  # the commit's, not the clock's
        revision = held.labels["org.opencontainers.image.revision"]
        assert len(revision) == 40 and revision != "unknown"


def test_two_checkouts_with_other_file_times_and_umask_give_the_same_digests(
    lab: Any, checkouts: tuple[Path, Path], published: list[Result]
) -> None:
    _, second = checkouts
    elsewhere = f"{lab.target.host}/elsewhere-{secrets.token_hex(3)}"  # empty: everything is assembled again
    again = image_commands.push_images(options(second, lab, registry=elsewhere))
    assert [r.action for r in again] == ["built"] * len(published)
    assert [r.digest for r in again] == [r.digest for r in published]


def test_a_no_change_push_from_the_other_checkout_skips_reads_no_upstream_manifest_and_writes_nothing(
    lab: Any, checkouts: tuple[Path, Path], published: list[Result]
) -> None:
    _, second = checkouts
    upstream_before, target_before = len(lab.upstream.requests()), len(lab.target.requests())
    lock = second / "images.lock.json"
    again = image_commands.push_images(options(second, lab, lock=str(lock)))
    assert [r.action for r in again] == ["skipped"] * len(published)
    upstream = lab.upstream.requests()[upstream_before:]
    target = lab.target.requests()[target_before:]
    assert not [u for m, u in upstream if m == "GET" and "/manifests/" in u]
    assert not [u for m, u in target if m in {"PUT", "POST", "PATCH", "DELETE"}]
    # Skipped, and still recorded as assembled: the index says how it was made.
    assert {record["built"] for record in json.loads(lock.read_text())["images"].values()} == {"assembled"}


def test_verify_rebuild_passes_on_a_fresh_publish(
    lab: Any, checkouts: tuple[Path, Path], published: list[Result]
) -> None:
    first, second = checkouts
    lock = str(first / "images.lock.json")
    checks = signing.verify_rebuilt(options(second, lab, VERIFY, rebuild=True, lock=lock))
    assert {c.status for c in checks} == {"same"}
    assert len(checks) == sum(len(r.tags) for r in published)


def test_verify_rebuild_fails_on_one_byte_of_config_and_names_the_entry(
    lab: Any, checkouts: tuple[Path, Path], published: list[Result], tmp_path: Path
) -> None:
    first, _ = checkouts
    vault = next(r for r in published if r.image == "vault")
    assert vault.digest is not None
    client = target_client(lab)
    repo, tag = repo_and_tag(vault.tags[0])
    index = json.loads(client.get_manifest(repo, vault.digest)[1])  # type: ignore[index]
    entry = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    info, body = client.get_manifest(repo, entry["digest"])  # type: ignore[misc]
    manifest = json.loads(body)
    config = client.get_blob(repo, manifest["config"]["digest"])
    changed = config.replace(b'"2.0.0"', b'"2.0.1"', 1)  # the version label: one byte
    assert len(changed) == len(config) and changed != config
    client.upload_blob(repo, sha256_digest(changed), changed)
    manifest["config"]["digest"] = sha256_digest(changed)
    body = canonical_json(manifest)
    client.put_manifest(repo, sha256_digest(body), body, info.media_type)
    entry.update(digest=sha256_digest(body), size=len(body))
    put_tags(client, repo, canonical_json(index), OCI_INDEX, [tag])

    with pytest.raises(SigningError) as raised:
        signing.verify_rebuilt(options(first, lab, VERIFY, rebuild=True, json=str(tmp_path / "checks.json")))
    assert raised.value.exit_code == 9
    assert "1 of " in raised.value.message and "vault/plain/2.0.0" in raised.value.message
    records = {r["ref"]: r for r in json.loads((tmp_path / "checks.json").read_text())}
    assert records[vault.tags[0]]["status"] == "differs"
    assert "linux/amd64: config differ" in records[vault.tags[0]]["detail"]
    assert records[vault.tags[1]]["status"] == "same"  # the alias still holds what the inputs make
    # Through the door as users run it: the verification exit code.
    env = clean_env(**{k: v for k, v in lab.env().items() if k != "CI_IMAGES_REGISTRY"})
    door = run_door(
        "module",
        [
            "verify-images",
            "--rebuild",
            "--catalog",
            str(first / "images.yaml"),
            "--lock",
            str(first / "images.lock.json"),
        ],
        env,
        timeout=300,
    )
    assert door.returncode == 9, door.stderr
    assert "vault/plain/2.0.0" in door.stderr


# ---- with smoke tests --------------------------------------------------------------------------------------------

VAULT_SMOKED = """\
registry: {target}/{path}
upstream_mirror: {upstream}
platforms: [linux/amd64, linux/arm64]
images:
  vault:
    source: docker.io/hashicorp/vault
    versions: ["2.0.0"]
    build: images/vault
    smoke: vault
"""


def test_build_images_and_test_images_work_for_an_assembled_entry_on_every_platform(
    lab: Any, tmp_path: Path, engine: Engine
) -> None:
    checkout = origin_repository(tmp_path, lab, VAULT_SMOKED)
    built = image_commands.build_images(options(checkout, lab, BUILD))
    assert [(r.action, r.built) for r in built] == [("built", "assembled")]
    with prepare(options(checkout, lab, BUILD)) as setup:
        (entry,) = setup.entries
    for platform in ("linux/amd64", "linux/arm64"):
        config = engine.image_attrs(local_ref(entry, platform))
        assert f"{config['Os']}/{config['Architecture']}" == platform
        assert config["Config"]["Labels"]["org.opencontainers.image.created"] == COMMIT_CREATED
    tested = image_commands.test_images(options(checkout, lab, TEST))
    runnable = [p for p in ("linux/amd64", "linux/arm64") if engine.can_run(p)]
    assert [(r.action, list(r.smoked)) for r in tested] == [("tested", runnable)]


BROKEN = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENTRYPOINT ["/bin/sh", "-c", "echo broken-on-purpose; exit 3"]
"""


def test_a_failed_smoke_test_moves_no_tag_and_names_the_digest(lab: Any, tmp_path: Path) -> None:
    checkout = origin_repository(tmp_path, lab, VAULT_SMOKED)
    (checkout / "images" / "vault" / "Dockerfile").write_text(BROKEN, encoding="utf-8")
    with pytest.raises(CiImagesError) as raised:
        image_commands.push_images(
            options(checkout, lab, platform="linux/amd64", json=str(tmp_path / "r.json"))
        )
    assert raised.value.exit_code == 7  # the smoke test's
    (record,) = json.loads((tmp_path / "r.json").read_text())
    message = record["error"]
    assert record["action"] == "failed" and "no tag moved" in message
    client = target_client(lab)
    with prepare(options(checkout, lab)) as setup:
        (entry,) = setup.entries
    repo = entry.target.path
    index_ref = message.split("no tag moved: ", 1)[1].split(" ", 1)[0]
    index_digest = index_ref.rsplit("@", 1)[1]
    platform_digest = documents.index_platforms(client.get_manifest(repo, index_digest)[1])  # type: ignore[index]
    assert platform_digest is not None
    assert entry.target.with_digest(platform_digest["linux/amd64"]) in message  # the digest that failed
    assert all(client.head_manifest(repo, tag) is None for tag in entry.tags)  # uploaded, never tagged


def test_a_shallow_clone_is_refused_before_anything_is_uploaded(lab: Any, tmp_path: Path) -> None:
    """A shallow clone cannot say when the build folder last changed: refused before anything is uploaded."""
    origin = origin_repository(tmp_path, lab)
    git(origin, "commit", "-q", "--allow-empty", "-m", "later")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(shallow))
    before = len(lab.target.requests())
    with pytest.raises(CiImagesError) as raised:
        image_commands.push_images(options(shallow, lab, images=["vault"], json=str(tmp_path / "r.json")))
    assert raised.value.exit_code == 2  # bad input, as the entry's own error says
    (record,) = json.loads((tmp_path / "r.json").read_text())
    assert "clone is shallow" in record["reason"] and "fetch-depth: 0" in record["error"]
    # Nothing stored: no blob or manifest PUT (the check before the work opens and cancels one upload session).
    assert not [u for m, u in lab.target.requests()[before:] if m in {"PUT", "PATCH"}]
