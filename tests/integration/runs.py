"""Helpers for the tests of runs that share one engine: the door in its own process group (so a SIGKILL reaches
it whole, as a CI runner's does), and a catalog whose images carry a label of their own, so a test finds exactly
the containers and images its runs made among those of every other session on the engine.

The label is the first instruction after FROM in the test's copy of images/vault: every image the build makes,
intermediate ones included, and every container started from one of them carry it (a container's labels include
its image's).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ci_images.engine.client import CONTAINER_LABEL, Engine
from tests.doors import MAIN

from .conftest import vault_catalog

NONCE_LABEL = "io.github.ci-images.test-nonce"


def nonce_catalog(root: Path, header: str = "", *, engine_build: bool = True) -> tuple[Path, str]:
    """VAULT_ONLY in ``root``, its Dockerfile labelling every image with a nonce: (catalog, nonce). With
    ``engine_build`` the Dockerfile gains a RUN step, so the engine builds it (images/vault alone is assembled)."""
    catalog = vault_catalog(root, header)
    nonce = secrets.token_hex(8)
    label_images(root / "images" / "vault" / "Dockerfile", nonce, run_step=engine_build)
    return catalog, nonce


def label_images(dockerfile: Path, nonce: str, *, run_step: bool) -> None:
    """Label every image ``dockerfile`` makes with ``nonce`` (and add a RUN step: the engine must build it)."""
    text = dockerfile.read_text(encoding="utf-8")
    text = text.replace("FROM ${BASE_IMAGE}\n", f"FROM ${{BASE_IMAGE}}\nLABEL {NONCE_LABEL}={nonce}\n", 1)
    dockerfile.write_text(text + ("RUN true\n" if run_step else ""), encoding="utf-8")


def containers_of(engine: Engine, nonce: str, *, running: bool = False) -> set[str]:
    """Names of the service containers runs started from this test's images (running ones only, with
    ``running``); not the engine's own containers of a build's RUN step, which the engine removes itself."""
    filters: dict[str, Any] = {"label": [f"{NONCE_LABEL}={nonce}", CONTAINER_LABEL]}
    if running:
        filters["status"] = "running"
    # The engine's list alone: the SDK's collections inspect each one after, which fails when a run removes one.
    return {c["Names"][0].lstrip("/") for c in engine.client.api.containers(all=True, filters=filters)}


def images_of(engine: Engine, nonce: str) -> set[str]:
    """Ids of every image this test's builds made that the engine still holds: tagged, dangling or intermediate."""
    return {i["Id"] for i in engine.client.api.images(all=True, filters={"label": f"{NONCE_LABEL}={nonce}"})}


RECIPE_LABEL = "io.github.ci-images.recipe"  # on a build's step images from its first build label on


def tags_of(image: Mapping[str, Any]) -> list[str]:
    """An image's tags as the engine lists them ("<none>:<none>" is no tag)."""
    return [t for t in image.get("RepoTags") or () if t != "<none>:<none>"]


def describe_images_of(engine: Engine, nonce: str) -> str:
    """What is left, for a failing assertion: id, tags, parent, age and whether it carries the build's labels."""
    listed = engine.client.api.images(all=True, filters={"label": f"{NONCE_LABEL}={nonce}"})
    return "\n".join(
        f"{i['Id'][7:19]} tags={tags_of(i)} parent={str(i.get('ParentId'))[7:19]} "
        f"age={time.time() - i['Created']:.0f}s labelled={RECIPE_LABEL in (i.get('Labels') or {})}"
        for i in listed
    )


def remove_everything_of(engine: Engine, nonce: str) -> None:
    """After a test (passing or not): its containers, then its images, and nothing else on the shared engine."""
    for name in containers_of(engine, nonce):
        engine.remove_container(name)
    for _ in range(3):  # children before parents: a parent goes once its last child has
        for image in images_of(engine, nonce):
            try:
                engine.client.images.remove(image, force=True)
            except Exception:  # noqa: BLE001, S112 (a parent of one not yet removed: the next round)
                continue


def push_argv(catalog: Path, registry: str, *extra: str) -> list[str]:
    return [
        "push-images",
        "--catalog",
        str(catalog),
        "--registry",
        registry,
        "--lock",
        str(catalog.parent / "lock.json"),
        *extra,
    ]


@contextmanager
def running(
    argv: list[str], env: dict[str, str], *, stdout: int | None = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The door in a subprocess of its own session (process group); standard error collected line by line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ci_images", *argv],
        cwd=MAIN,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            kill_group(process)
        process.wait(timeout=120)
        reader.join(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the whole process group, as a CI runner does after its grace period."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def wait_for(
    ready: Callable[[], bool], process: subprocess.Popen[str], lines: list[str], timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            return
        time.sleep(0.02)
    pytest.fail("the run never reached the state the test waits for; output:\n" + "\n".join(lines[-40:]))


def saw(lines: list[str], phrase: str) -> Callable[[], bool]:
    return lambda: any(phrase in line for line in lines)
