"""Eight forced, signed push-images killed with SIGKILL (the whole process group, as a CI runner does after its grace
period) at random phases: planning, building, the smoke test, uploads, tag moves, signing, a mirror copy; then one
rerun. Nothing of the killed runs may stay in the engine: no container, no image (built, named, dangling, or a step
image of a build killed half-way), no run marker. The rerun exits 0, and every tag verifies with the key.

Long by nature (nine runs); kept to one entry the engine builds (a RUN step), one assembled entry (its smoke test
pulls it from the target: a killed run's pull must not stay either), both for the host's platform, and one mirror
without smoke test.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ci_images.engine.client import Engine
from tests.doors import clean_env, run_door

from .conftest import REPO_ROOT
from .runs import (
    containers_of,
    describe_images_of,
    images_of,
    kill_group,
    label_images,
    nonce_catalog,
    push_argv,
    remove_everything_of,
    running,
    saw,
    wait_for,
)

pytestmark = pytest.mark.integration

RUN_PID_LABEL = "io.github.getsops.ci-images.run.pid"  # on a run's marker volume: which process the run is
ASSEMBLED = """\
  vault-assembled:
    source: docker.io/hashicorp/vault
    versions: ["2.0.0"]
    build: images/vault-assembled
    smoke: vault
"""
MIRROR = """\
  vault-upstream:
    source: docker.io/library/vault
    target: mirror/library/vault
    versions: ["1.10.0"]
    smoke: null
"""


def _phases(engine: Engine, nonce: str, registry: str) -> dict[str, Callable[[list[str]], bool]]:
    """Each phase: whether, given the run's output lines so far, the run is in it."""
    return {
        "planning": lambda lines: True,  # from its start: killed during start-up or the plan
        "building": lambda lines: saw(lines, "building linux/")(),
        "smoke test": lambda lines: bool(containers_of(engine, nonce, running=True)),
        "upload": lambda lines: saw(lines, "uploading linux/")(),
        "tag moves": lambda lines: saw(lines, f"moved {registry}/vault:")(),
        "signing": lambda lines: saw(lines, f"moved {registry}/vault:latest")(),
        "mirror copy": lambda lines: saw(lines, "copying ")(),
    }


def test_eight_sigkills_then_one_rerun_leave_nothing_of_the_killed_runs(
    lab: Any, engine: Engine, tmp_path: Path
) -> None:
    catalog, nonce = nonce_catalog(tmp_path)
    assembled = tmp_path / "images" / "vault-assembled"
    shutil.copytree(REPO_ROOT / "images" / "vault", assembled)
    label_images(assembled / "Dockerfile", nonce, run_step=False)
    catalog.write_text(catalog.read_text() + ASSEMBLED + MIRROR)
    path = f"sigkills/{tmp_path.name[-10:].lower().replace('_', '-')}"
    registry = f"{lab.target.host}/{path}"
    env = clean_env(**lab.env(), CI="true", PYTHONUNBUFFERED="1", COSIGN_PASSWORD="kill 7d1e")
    made = run_door("module", ["generate-key", "--output", str(tmp_path / "keys")], env)
    assert made.returncode == 0, made.stderr
    env["COSIGN_KEY"] = str(tmp_path / "keys" / "cosign.key")
    argv = push_argv(catalog, registry, "--force")
    seed = int(os.environ.get("CI_IMAGES_TEST_SEED") or time.time())
    chance = random.Random(seed)
    phases = _phases(engine, nonce, registry)
    order = [*phases, chance.choice(list(phases))]
    chance.shuffle(order)
    killed: list[tuple[str, int]] = []
    try:
        for phase in order:
            with running(argv, env) as (process, lines):
                wait_for(lambda: phases[phase](lines), process, lines)  # noqa: B023 (waited for at once)
                time.sleep(chance.uniform(0.5, 2.5) if phase == "planning" else chance.uniform(0, 0.3))
                kill_group(process)
                process.wait(timeout=60)
            killed.append((phase, process.pid))
        again = run_door("module", argv, env, timeout=900)
        assert again.returncode == 0, f"seed {seed}, phases {order}:\n{again.stderr[-3000:]}"
        assert containers_of(engine, nonce) == set(), f"seed {seed}, phases {order}"
        left = f"seed {seed}, phases {order}\n{describe_images_of(engine, nonce)}\n{again.stderr[-3000:]}"
        assert images_of(engine, nonce) == set(), left  # built, named, dangling or a step image
        markers = [
            v["Name"]
            for _, pid in killed
            for v in engine.client.api.volumes(filters={"label": f"{RUN_PID_LABEL}={pid}"})["Volumes"] or ()
        ]
        assert markers == [], f"seed {seed}, phases {order}"
        verified = run_door(
            "module",
            [
                "verify-images",
                "--catalog",
                str(catalog),
                "--registry",
                registry,
                "--key",
                str(tmp_path / "keys" / "cosign.pub"),
                "--lock",
                str(catalog.parent / "lock.json"),
            ],
            env,
            timeout=300,
        )
        assert verified.returncode == 0, verified.stderr[-3000:]
    finally:
        remove_everything_of(engine, nonce)
