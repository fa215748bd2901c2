"""Runs that share one engine, as CI runners and laptops do: a run killed with SIGKILL at its smoke test and the run
after it; two publishing runs at once that the machine lock does not serialize (each its own cache folder); a tag
another writer moves while a run moves its tags; an engine that answers an export with an error.

Each test builds its own images (tests/integration/runs.py labels them with a nonce) and looks only at those: the
engine is shared with other sessions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_images.engine.client import Engine
from ci_images.errors import EngineError
from tests.doors import clean_env, run_door

from .conftest import target_client
from .proxy import Request, fault_proxy
from .runs import (
    containers_of,
    images_of,
    kill_group,
    nonce_catalog,
    push_argv,
    remove_everything_of,
    running,
    tags_of,
    wait_for,
)

pytestmark = pytest.mark.integration

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def nonces(engine: Engine) -> Iterator[list[str]]:
    """The nonces of the catalogs a test made: whatever their runs left is removed afterwards."""
    made: list[str] = []
    yield made
    for nonce in made:
        remove_everything_of(engine, nonce)


def unique_path(root: Path, what: str) -> str:
    return f"{what}/{root.name[-10:].lower().replace('_', '-')}"


def test_a_run_killed_at_its_smoke_test_leaves_no_container_after_the_next_run(
    lab: Any, engine: Engine, tmp_path: Path, nonces: list[str]
) -> None:
    catalog, nonce = nonce_catalog(tmp_path)
    nonces.append(nonce)
    argv = push_argv(catalog, f"{lab.target.host}/{unique_path(tmp_path, 'killed')}", "--force")
    env = clean_env(**lab.env(), CI="true", PYTHONUNBUFFERED="1")
    with running(argv, env) as (process, lines):
        wait_for(lambda: bool(containers_of(engine, nonce, running=True)), process, lines)
        kill_group(process)
        process.wait(timeout=60)
    left = containers_of(engine, nonce)
    assert left, "the killed run's smoke container is gone already: the test proves nothing"
    again = run_door("module", argv, env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert containers_of(engine, nonce) == set()
    # The rerun says what it removed, by name.
    assert all(name in again.stderr for name in left), again.stderr[-3000:]


def test_two_runs_with_their_own_cache_folders_share_one_engine(
    lab: Any, engine: Engine, tmp_path: Path, nonces: list[str]
) -> None:
    """Two checkouts (two cache folders, so no machine lock between them) push the same entry at once. Their builds
    are one image (the builder's cache and the same labels: SOURCE_DATE_EPOCH), so the first to finish must not
    remove it while the second smoke-tests it: its tag moves wait until the second run's smoke container runs."""
    first_root, second_root = tmp_path / "first", tmp_path / "second"
    first_root.mkdir()
    second_root.mkdir()
    first_catalog, nonce = nonce_catalog(first_root)
    second_catalog, _ = nonce_catalog(second_root)
    second_catalog.parent.joinpath("images/vault/Dockerfile").write_text(
        first_catalog.parent.joinpath("images/vault/Dockerfile").read_text()
    )
    nonces.append(nonce)
    first_path, second_path = unique_path(first_root, "one-engine"), unique_path(second_root, "one-engine")
    blocked = threading.Event()

    def hold_the_first_tag(request: Request) -> None:
        if request.method == "PUT" and request.path.endswith("/manifests/2.0.0"):
            blocked.set()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not containers_of(engine, nonce, running=True):
                time.sleep(0.05)

    def env(root: Path) -> dict[str, str]:
        return clean_env(
            **lab.env(),
            CI="true",
            PYTHONUNBUFFERED="1",
            XDG_CACHE_HOME=str(root / "cache"),
            SOURCE_DATE_EPOCH="1700000000",
        )

    with fault_proxy(lab.target.host, str(lab.ca_bundle), fault=hold_the_first_tag) as (proxy, _):
        first_argv = push_argv(first_catalog, f"{proxy}/{first_path}", "--plain-http", "--force")
        second_argv = push_argv(second_catalog, f"{lab.target.host}/{second_path}", "--force")
        with running(first_argv, env(first_root)) as (first, first_lines):
            wait_for(blocked.is_set, first, first_lines)  # built, smoke-tested, uploaded: its tags move next
            with running(second_argv, env(second_root)) as (second, second_lines):
                codes = (first.wait(timeout=600), second.wait(timeout=600))
    outputs = "\n=====\n".join("\n".join(lines[-30:]) for lines in (first_lines, second_lines))
    assert codes == (0, 0), outputs
    assert "internal error" not in outputs
    client = target_client(lab)
    for root, path, host in ((first_root, first_path, proxy), (second_root, second_path, lab.target.host)):
        lock = json.loads((root / "lock.json").read_text())["images"]
        for tag in ("2.0.0", "2.0", "latest"):
            held = client.head_manifest(f"{path}/vault", tag)
            assert held is not None
            assert lock[f"{host}/{path}/vault:{tag}"]["digest"] == held.digest


def test_a_raced_tag_is_reported_signed_and_the_lock_file_follows_the_registry(
    lab: Any, engine: Engine, tmp_path: Path, nonces: list[str]
) -> None:
    """A first publish (digest D1), then a forced one (D2) during which another writer moves the version tag back to
    D1 just after this run moved it. The run reads its tags back: the raced tag is reported (table, --json, exit 12),
    the lock file records what the registry holds, and D1 (unsigned by its writer) is signed with this run's key."""
    catalog, nonce = nonce_catalog(tmp_path)
    nonces.append(nonce)
    path = unique_path(tmp_path, "raced")
    client = target_client(lab)
    keys = tmp_path / "keys"
    base_env = clean_env(**lab.env(), CI="true", COSIGN_PASSWORD="race 2f8c")
    made = run_door("module", ["generate-key", "--output", str(keys)], base_env)
    assert made.returncode == 0, made.stderr
    older: dict[str, bytes] = {}

    def the_other_writer(request: Request) -> None:
        # Just before this run moves its second tag, the other writer puts D1 back under the first.
        if request.method == "PUT" and request.path.endswith("/manifests/2.0") and older:
            client.put_manifest(f"{path}/vault", "2.0.0", older["body"], OCI_INDEX)

    with fault_proxy(lab.target.host, str(lab.ca_bundle), fault=the_other_writer) as (proxy, _):
        registry = f"{proxy}/{path}"
        first = run_door(
            "module",
            push_argv(catalog, registry, "--plain-http"),
            {**base_env, "SOURCE_DATE_EPOCH": "1700000000"},
            timeout=600,
        )
        assert first.returncode == 0, first.stderr[-3000:]
        got = client.get_manifest(f"{path}/vault", "2.0.0")
        assert got is not None
        d1, older["body"] = got[0].digest, got[1]
        signing_env = {**base_env, "SOURCE_DATE_EPOCH": "1700000100", "COSIGN_KEY": str(keys / "cosign.key")}
        second = run_door(
            "module",
            push_argv(catalog, registry, "--plain-http", "--force", "--json", "-"),
            signing_env,
            timeout=600,
        )
        assert second.returncode == 12, second.stderr[-3000:]
        (record,) = json.loads(second.stdout)
        d2 = record["digest"]
        assert d2 != d1
        version_tag = f"{registry}/vault:2.0.0"
        assert record["raced"] == {version_tag: d1}
        assert "raced" in second.stderr
        lock = json.loads((catalog.parent / "lock.json").read_text())
        for tag in ("2.0.0", "2.0", "latest"):
            held = client.head_manifest(f"{path}/vault", tag)
            assert held is not None
            assert lock["images"][f"{registry}/vault:{tag}"]["digest"] == held.digest
        assert lock["images"][version_tag]["digest"] == d1
        verify = [
            "verify-images",
            "--catalog",
            str(catalog),
            "--registry",
            registry,
            "--plain-http",
            "--key",
            str(keys / "cosign.pub"),
            "--lock",
            str(catalog.parent / "lock.json"),
        ]
        # D1 is signed by this run's key now, so every tag's signature verifies ...
        verified = run_door("module", [*verify, "--no-attest"], base_env, timeout=300)
        assert verified.returncode == 0, verified.stderr[-3000:]
        assert d1 in lock["signatures"]
        # ... but this run did not make D1 and invents no provenance for it: its writer published it unattested,
        # and verify-images says so, for that tag alone.
        checked = run_door("module", verify, base_env, timeout=300)
        assert checked.returncode == 9, checked.stderr[-3000:]
        failing = [line for line in checked.stderr.splitlines() if "attestation-missing" in line]
        assert len(failing) == 1 and version_tag in failing[0], checked.stderr[-3000:]


def test_an_engine_error_while_exporting_is_an_engine_error(engine: Engine) -> None:
    """The export streams: an image the engine no longer has is answered mid-stream, and still ends as EngineError."""
    with pytest.raises(EngineError, match="sha256:0000"):
        for _ in engine.save("sha256:" + "0" * 64):
            pass


def test_an_image_a_container_uses_is_left_alone_with_the_engine_s_words(
    engine: Engine, tmp_path: Path, nonces: list[str], standin_images: dict[str, str]
) -> None:
    """Removing an image that a running container of another run uses: refused by the engine (409), which the
    error says in its words and without telling to start an engine that is running."""
    nonce = "solo" + tmp_path.name[-8:].lower().replace("_", "-")
    nonces.append(nonce)
    folder = tmp_path / "context"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nLABEL io.github.ci-images.test-nonce={nonce}\n"
    )
    image = engine.build(
        folder,
        tag=f"ci-images-test/used:{nonce}",
        platform=engine.host_platform(),
        buildargs={"BASE_IMAGE": standin_images["hashicorp/vault"]},
        labels={},
    )
    container = engine.client.containers.run(
        image, entrypoint=["sleep", "120"], network_mode="none", detach=True, labels={"ci-images-test": nonce}
    )
    try:
        with pytest.raises(EngineError) as caught:
            engine.remove_image(image)
        assert "start a Docker engine" not in caught.value.render()
        assert "conflict" in caught.value.message.lower() or "being used" in caught.value.message
        assert image in images_of(engine, nonce)
    finally:
        container.remove(force=True)


LEAVER = """
import sys, time
from ci_images.engine.client import CONTAINER_LABEL, Engine

engine = Engine.connect()
engine.begin_run()
image, nonce = sys.argv[1], sys.argv[2]
engine.tag(image, f"ci-images/clean-engine-test:{nonce}.run-{engine.run_id}")
labels = {CONTAINER_LABEL: engine.run_id, **engine.run.labels(), "io.github.ci-images.test-nonce": nonce}
engine.client.containers.run(image, entrypoint=["sleep", "300"], network_mode="none", detach=True, labels=labels)
print(engine.run_id, flush=True)
time.sleep(300)
"""


def test_clean_engine_removes_what_a_killed_run_left_on_both_doors(
    engine: Engine, tmp_path: Path, nonces: list[str], standin_images: dict[str, str]
) -> None:
    """A process that made a run marker, a run-tagged image reference and a labelled container, killed with SIGKILL;
    `clean-engine` removes all three and says so (--json), and a second call finds nothing."""
    nonce = "clean" + tmp_path.name[-8:].lower().replace("_", "-")
    nonces.append(nonce)
    image = standin_images["hashicorp/vault"]  # shared with other tests: only a reference is added to it
    env = clean_env()
    leaver = subprocess.Popen(
        [sys.executable, "-c", LEAVER, image, nonce], env=env, stdout=subprocess.PIPE, text=True
    )
    assert leaver.stdout is not None
    run_id = leaver.stdout.readline().strip()
    leaver.kill()
    leaver.wait()
    leaver.stdout.close()
    ref = f"ci-images/clean-engine-test:{nonce}.run-{run_id}"
    assert engine.has_image(ref) and containers_of(engine, nonce)
    cleaned = run_door("module", ["clean-engine", "--json"], env, timeout=120)
    assert cleaned.returncode == 0, cleaned.stderr
    (record,) = [r for r in json.loads(cleaned.stdout) if r["run"] == run_id]
    assert record["why"] == "process gone"
    assert record["images"] == [ref]
    assert len(record["containers"]) == 1
    assert containers_of(engine, nonce) == set()
    assert not engine.has_image(ref)
    assert engine.has_image(image)  # the image itself: other references hold it
    assert engine.client.volumes.list(filters={"name": f"ci-images-run-{run_id}"}) == []
    again = run_door("invoke", ["clean-engine", "--json"], env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert run_id not in again.stdout


def test_build_images_names_its_builds_for_test_images_and_leaves_no_run_reference(
    lab: Any, engine: Engine, tmp_path: Path, nonces: list[str]
) -> None:
    """What build-images leaves is its output (the names test-images and a user read); the run's own references go
    when it ends. The image gets a name of its own here: ci-images/vault:... is every session's."""
    catalog, nonce = nonce_catalog(tmp_path)
    nonces.append(nonce)
    name = f"vault-{nonce[:8]}"
    catalog.write_text(catalog.read_text().replace("  vault:\n", f"  {name}:\n    target: vault\n"))
    registry = f"{lab.target.host}/{unique_path(tmp_path, 'names')}"
    env = clean_env(**lab.env(), CI="true")
    argv = ["--catalog", str(catalog), "--registry", registry]
    built = run_door("module", ["build-images", *argv], env, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    names = {
        tag
        for image in engine.client.api.images(filters={"label": f"io.github.ci-images.test-nonce={nonce}"})
        for tag in tags_of(image)
    }
    assert names == {
        f"ci-images/{name}:2.0.0-linux-amd64",
        *(f"{registry}/vault:{t}" for t in ("2.0.0", "2.0", "latest")),
    }
    tested = run_door("module", ["test-images", *argv], env, timeout=600)
    assert tested.returncode == 0, tested.stderr[-3000:]
