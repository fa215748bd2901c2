"""Interrupts, concurrent runs and what a run leaves in the engine, as a user's CI meets them: the door in a
subprocess, signalled while it builds, smoke-tests or uploads; two pushes at once; intermediate images."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ci_images.engine.client import CONTAINER_LABEL, Engine
from ci_images.engine.runs import PID_LABEL
from ci_images.lab.standins import IMAGE_PREFIX, prune_stale_standins, standin_ref
from tests.doors import MAIN, clean_env, run_door

from .conftest import target_client, vault_catalog
from .proxy import fault_proxy, first, slow
from .runs import push_argv, running, saw, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return vault_catalog(tmp_path)


def our_containers(engine: Engine, pid: int) -> set[str]:
    """The containers of the run in process ``pid`` (its labels name it): other sessions' runs on the shared engine
    start and remove theirs meanwhile. The engine's list alone: the SDK's collection inspects each container after
    listing it, which fails when a run removes one in between."""
    filters = {"label": [CONTAINER_LABEL, f"{PID_LABEL}={pid}"]}
    return {c["Id"] for c in engine.client.api.containers(all=True, filters=filters)}


SLOW_UPLOADS = first(10_000, slow(3), lambda r: r.method == "PUT" and "/blobs/uploads/" in r.path)
# The smoke stage runs arm64 under QEMU, whose probe takes seconds; the signal goes as soon as its container exists.
STAGES = [
    ("building", signal.SIGTERM, "building linux/amd64", None, "linux/amd64"),
    ("smoke test", signal.SIGINT, "smoke test 'vault' on linux/arm64", None, "linux/arm64"),
    ("upload", signal.SIGTERM, "uploading linux/amd64", SLOW_UPLOADS, "linux/amd64"),
]


@pytest.mark.parametrize(
    ("stage", "signum", "phrase", "rule", "platform"), STAGES, ids=[s[0] for s in STAGES]
)
def test_an_interrupt_stops_cleanly_and_the_next_run_completes(
    stage: str,
    signum: signal.Signals,
    phrase: str,
    rule: Any,
    platform: str,
    lab: Any,
    catalog: Path,
    engine: Engine,
) -> None:
    path = f"interrupted/{catalog.parent.name[-10:].lower().replace('_', '-')}"
    if stage == "building":  # a RUN step: the engine builds it (images/vault alone is assembled, in no time)
        with (catalog.parent / "images" / "vault" / "Dockerfile").open("a", encoding="utf-8") as dockerfile:
            dockerfile.write("RUN true\n")
    env = clean_env(**lab.env(), CI="true", PYTHONUNBUFFERED="1")
    with fault_proxy(lab.target.host, str(lab.ca_bundle), fault=rule or (lambda request: None)) as (proxy, _):
        argv = push_argv(catalog, f"{proxy}/{path}", "--plain-http", "--platform", platform)
        with running(argv, env) as (process, lines):
            wait_for(saw(lines, phrase), process, lines)
            if stage == "smoke test":  # signal while the service container runs, whatever the machine's speed
                wait_for(lambda: bool(our_containers(engine, process.pid)), process, lines, timeout_s=120)
            else:
                time.sleep(0.1)  # into the step, not before it
            process.send_signal(signum)
            code = process.wait(timeout=180)
    assert code == 128 + signum, "\n".join(lines[-30:])
    last = lines[-1]
    assert last.startswith(f"error: interrupted by {signum.name}: 0 of 1 entries done"), "\n".join(
        lines[-30:]
    )
    assert "stopped before their tags moved (vault/plain/2.0.0)" in last
    assert "Traceback" not in "\n".join(lines)
    assert our_containers(engine, process.pid) == set()  # the smoke service (if one ran) was removed
    if stage == "smoke test":  # by the interrupt at once, not when the probe would have ended
        assert "removed 1 container(s) this run started" in lines
    client = target_client(lab)
    assert client.list_tags(f"{path}/vault") == []  # no tag moved
    again = run_door(
        "module", push_argv(catalog, f"{lab.target.host}/{path}"), clean_env(**lab.env(), CI="true")
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(client.list_tags(f"{path}/vault")) == ["2.0", "2.0.0", "latest"]


def test_two_pushes_at_once_take_turns_and_agree_with_the_registry(
    lab: Any, catalog: Path, engine: Engine
) -> None:
    path = f"together/{catalog.parent.name[-10:].lower().replace('_', '-')}"
    env = clean_env(**lab.env(), CI="true", PYTHONUNBUFFERED="1")
    argv = push_argv(catalog, f"{lab.target.host}/{path}", "--json", "-")
    first_run, second_run = (
        subprocess.Popen(
            [sys.executable, "-m", "ci_images", *argv],
            cwd=MAIN,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    )
    outcomes = [run.communicate(timeout=600) for run in (first_run, second_run)]
    assert [first_run.returncode, second_run.returncode] == [0, 0], outcomes
    actions = sorted(json.loads(out)[0]["action"] for out, _ in outcomes)
    assert actions == ["built", "skipped"]  # the second planned after the first had published
    assert any("another ci-images run is publishing" in err for _, err in outcomes)
    lock = json.loads((catalog.parent / "lock.json").read_text())["images"]
    client = target_client(lab)
    for tag in ("2.0.0", "2.0", "latest"):
        info = client.head_manifest(f"{path}/vault", tag)
        assert info is not None
        assert lock[f"{lab.target.host}/{path}/vault:{tag}"]["digest"] == info.digest
    # A push leaves none of its per-platform images behind (no --keep-images).
    prefix = (
        f"{lab.target.host}/{path}/vault:"  # this lab's: other sessions sharing the engine run this test too
    )
    leftovers = [t for i in engine.client.api.images() for t in i["RepoTags"] or () if t.startswith(prefix)]
    assert leftovers == []


def test_keep_images_keeps_the_per_platform_builds(lab: Any, catalog: Path, engine: Engine) -> None:
    path = f"kept/{catalog.parent.name[-10:].lower().replace('_', '-')}"
    done = run_door(
        "module",
        push_argv(catalog, f"{lab.target.host}/{path}", "--keep-images"),
        clean_env(**lab.env(), CI="true"),
    )
    # This lab's target only: a failed run of this test elsewhere on a shared engine leaves its own.
    repository = f"{lab.target.host}/{path}/vault:"
    kept = [t for i in engine.client.api.images() for t in i["RepoTags"] or () if t.startswith(repository)]
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        assert sorted(t.rsplit(":", 1)[1] for t in kept) == ["2.0", "2.0.0", "latest"]
    finally:
        for tag in kept:
            engine.remove_image(tag)


def test_stale_standins_are_pruned_and_current_ones_kept(lab: Any, engine: Engine) -> None:
    current = standin_ref("hashicorp/vault", "2.0.0", engine.host_platform())
    stale = f"{IMAGE_PREFIX}/vault:2.0.0-{engine.host_platform().split('/')[1]}-{'0' * 16}"
    engine.tag(current, stale)
    removed = prune_stale_standins(engine, older_than_s=0)
    assert stale in removed
    assert not engine.has_image(stale)
    assert engine.has_image(current)
