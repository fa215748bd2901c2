"""Benchmark: a cold first `push-images` vs the same images made with plain `docker build` and `docker push`.

One run, one lab, two comparisons, each side pushing into a new, empty registry:

- assembled: every built entry of the shipped catalog (every version and variant, amd64 and arm64). Their
  Dockerfiles have no RUN step, so ci-images assembles them as registry documents (no engine build, no `docker
  save`); plain docker builds each platform with the classic builder and pushes it.
- engine: a Dockerfile with a RUN step (every hashicorp/vault version of the lab, amd64 and arm64), which ci-images
  builds with the engine as before (build, `docker save`, upload by digest), against the same plain docker loop.

Smoke tests are left out on the ci-images side (the catalogs are copied with `smoke: null`): plain docker tests
nothing. Upstream bases are pulled by digest into the engine first, for both sides alike (the assembly does not use
them), and the images one side built are removed from the engine before the other side builds (the classic
builder's cache is those images). ci-images runs as people run it, `python -m ci_images push-images --jobs 1` (the
plain loop is sequential too); plain docker is the docker CLI with the classic builder (DOCKER_BUILDKIT=0) and its
own config folder (the login stays out of ~/.docker).

    nox -s bench -- cold          # or: python bench/bench_cold.py [--catalog images.yaml] [--keep-lab]
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import arguments, empty_registry, manifest_gets, table, writes

from ci_images import proc
from ci_images.commands.options import PUSH, parse_options
from ci_images.commands.setup import prepare
from ci_images.engine.client import Engine
from ci_images.lab import lab
from ci_images.lab.cli import standins_for
from ci_images.plan.entries import Entry
from ci_images.registry import documents

GOAL = 0.5  # assembled push-images / plain docker
RUN_STEP_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN mkdir -p /ci-images && echo built > /ci-images/run-step
ENV VAULT_DEV_LISTEN_ADDRESS=0.0.0.0:8200
"""
RUN_STEP_CATALOG = """\
platforms: [linux/amd64, linux/arm64]
images:
  run-step:
    source: docker.io/hashicorp/vault
    versions: ["1.14.10", "1.21.4", "2.0.0"]
    build: images/run-step
    smoke: null
"""


@dataclass(frozen=True)
class Side:
    seconds: float
    upstream_gets: int
    target_writes: int


def without_smoke_tests(catalog: Path, folder: Path) -> Path:
    """A copy of ``catalog`` (and its images/) whose entries run no smoke test."""
    shutil.copytree(catalog.parent / "images", folder / "images")
    text = re.sub(
        r"^(\s*)smoke: \S+$", r"\1smoke: null", catalog.read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    copy = folder / "images.yaml"
    copy.write_text(text, encoding="utf-8")
    return copy


def run_step_catalog(folder: Path) -> Path:
    (folder / "images" / "run-step").mkdir(parents=True)
    (folder / "images" / "run-step" / "Dockerfile").write_text(RUN_STEP_DOCKERFILE, encoding="utf-8")
    catalog = folder / "images.yaml"
    catalog.write_text(RUN_STEP_CATALOG, encoding="utf-8")
    return catalog


def built_entries(catalog: Path, env: dict[str, str]) -> list[Entry]:
    with prepare(parse_options(PUSH, {"catalog": str(catalog)}, env)) as setup:
        return [e for e in setup.entries if e.mode == "build"]


def pull_bases(engine: Engine, the_lab: Any, entries: list[Entry]) -> dict[tuple[str, str], str]:
    """Every entry's base per platform, pulled by digest: (entry key, platform) -> pinned reference."""
    client = the_lab.upstream_client()
    bases: dict[tuple[str, str], str] = {}
    for entry in entries:
        digests = documents.platform_digests(client, entry.pull.path, entry.version)
        for platform in entry.platforms:
            ref = entry.pull.with_digest(digests[platform])
            engine.pull(ref, platform=platform)
            bases[(entry.key, platform)] = ref
    client.close()
    return bases


def run_ci_images(the_lab: Any, target: Any, catalog: Path, images: list[str], workdir: Path) -> float:
    env = {
        **os.environ,
        **the_lab.env(),
        "CI_IMAGES_REGISTRY": f"{target.host}/bench-tool",
        "CI_IMAGES_REGISTRY_USER": target.username,
        "CI_IMAGES_REGISTRY_PASSWORD": target.password,
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed for users: Python keeps the modules' bytecode
    argv: list[str | Path] = [sys.executable, "-m", "ci_images", "push-images", "--catalog", catalog]
    argv += [
        "--images",
        ",".join(images),
        "--jobs",
        "1",
        "--lock",
        workdir / f"{catalog.parent.name}.lock.json",
    ]
    started = time.monotonic()
    proc.run(argv, env=env, timeout=7200)
    return time.monotonic() - started


def run_plain_docker(
    target: Any, entries: list[Entry], bases: dict[tuple[str, str], str], workdir: Path
) -> float:
    config = Path(tempfile.mkdtemp(prefix="docker-config-", dir=workdir))
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_BUILDKIT": "0"}
    started = time.monotonic()
    proc.run(
        ["docker", "login", "-u", target.username, "--password-stdin", target.host],
        env=env,
        input_text=target.password,
        timeout=60,
    )
    for entry in entries:
        assert entry.context is not None and entry.dockerfile is not None
        for platform in entry.platforms:
            tag = f"{target.host}/bench-plain/{entry.image}:{entry.tags[0]}-{platform.replace('/', '-')}"
            argv: list[str | Path] = ["docker", "build", "-q", "--platform", platform, "-t", tag]
            argv += ["-f", entry.dockerfile, "--build-arg", f"BASE_IMAGE={bases[(entry.key, platform)]}"]
            for key, value in entry.build_args.items():
                argv += ["--build-arg", f"{key}={value}"]
            proc.run([*argv, entry.context], env=env, timeout=3600)
            proc.run(["docker", "push", "-q", tag], env=env, timeout=3600)
    return time.monotonic() - started


def remove_built(engine: Engine, prefixes: tuple[str, ...]) -> None:
    """Remove every image tagged under ``prefixes`` (and so the classic builder's cache of those builds)."""
    # The low-level list: the SDK's images.list() inspects each image, which fails when another user of the shared
    # engine removes one meanwhile.
    for image in engine.client.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefixes):
                engine.remove_image(tag)


def compare(the_lab: Any, engine: Engine, catalog: Path, workdir: Path) -> tuple[Side, Side, int]:
    """(ci-images, plain docker, platform images) for one catalog, each into its own empty registry."""
    entries = built_entries(catalog, {**the_lab.env(), "CI": "true"})
    builds = sum(len(e.platforms) for e in entries)
    bases = pull_bases(engine, the_lab, entries)
    sides = []
    for name in ("ci-images", "plain"):
        with empty_registry(the_lab, workdir / catalog.parent.name / f"{name}-registry") as target:
            before = len(the_lab.upstream.requests())
            print(
                f"{catalog.parent.name}: {name}, {len(entries)} entries ({builds} platform images) ...",
                flush=True,
            )
            if name == "ci-images":
                images = sorted(
                    {e.image for e in entries}
                )  # the built ones: the mirrors are another benchmark
                seconds = run_ci_images(the_lab, target, catalog, images, workdir)
            else:
                seconds = run_plain_docker(target, entries, bases, workdir)
            sides.append(
                Side(seconds, manifest_gets(the_lab.upstream.requests()[before:]), writes(target.requests()))
            )
            print(f"{catalog.parent.name}: {name}: {sides[-1]}", flush=True)
        remove_built(engine, ("ci-images/", f"{target.host}/"))
    return sides[0], sides[1], builds


def report(assembled: tuple[Side, Side, int], built: tuple[Side, Side, int]) -> float:
    rows = [
        [
            "cold push into an empty registry, no smoke tests",
            "seconds",
            "upstream manifest GETs",
            "target writes",
        ]
    ]
    for (tool, plain, builds), what in (
        (assembled, "shipped catalog, assembled"),
        (built, "RUN step, engine"),
    ):
        rows.append(
            [
                f"push-images: {what} ({builds} images)",
                f"{tool.seconds:.1f}",
                str(tool.upstream_gets),
                str(tool.target_writes),
            ]
        )
        rows.append(
            [
                f"docker build + docker push ({builds} images)",
                f"{plain.seconds:.1f}",
                str(plain.upstream_gets),
                str(plain.target_writes),
            ]
        )
    print(table(rows))
    ratio = assembled[0].seconds / assembled[1].seconds
    print(f"ratio assembled push-images / plain docker: {ratio:.2f} (goal <= {GOAL})")
    print(f"ratio engine push-images (RUN step) / plain docker: {built[0].seconds / built[1].seconds:.2f}")
    return ratio


def main() -> int:
    args = arguments(__doc__)
    catalog = Path(args.catalog).resolve()
    standins, platforms, narrowed = standins_for(catalog)
    workdir = Path(tempfile.mkdtemp(prefix="ci-images-bench-cold-"))
    print(f"lab: starting in {workdir} ...", flush=True)
    the_lab = lab.lab_up(workdir / "lab", standins=standins, platforms=platforms, narrowed=narrowed)
    engine = Engine.connect()
    try:
        shipped = without_smoke_tests(catalog, workdir / "shipped")
        run_step = run_step_catalog(workdir / "run-step")
        assembled = compare(the_lab, engine, shipped, workdir)
        built = compare(the_lab, engine, run_step, workdir)
        return 0 if report(assembled, built) <= GOAL else 1
    finally:
        engine.close()
        if not args.keep_lab:
            lab.lab_down(workdir / "lab")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
