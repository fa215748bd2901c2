"""Benchmark: a cold first `push-images` (smoke tests reported apart) vs the same builds with plain `docker build` and
`docker push` per platform.

One run, one lab: the shipped catalog's built entries (every version and variant, amd64 and arm64) against the lab's
stand-in upstream. Both sides start cold: each pushes into a new, empty registry, and the images one side built are
removed from the engine before the other side builds (the classic builder's cache is those images). Upstream bases
are pulled by digest into the engine first, for both alike. ci-images runs as people run it, `python -m ci_images
push-images`, one entry at a time (--jobs 1: the plain loop is sequential too, and smoke time then adds up); the
time its smoke tests took (from its own log lines) is reported apart, and the overhead ratio leaves it out, since
plain docker tests nothing. Plain docker is the docker CLI with the classic builder (DOCKER_BUILDKIT=0) and its own
config folder (the login stays out of ~/.docker).

    nox -s bench -- cold          # or: python bench/bench_cold.py [--catalog images.yaml] [--keep-lab]
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
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

GOAL = 1.15
SMOKE_LINE = re.compile(r"^smoke \S+ .* ok in (?P<seconds>[0-9.]+) s$", re.MULTILINE)


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


def run_ci_images(the_lab: Any, target: Any, catalog: Path, workdir: Path) -> tuple[float, float]:
    """(seconds in all, seconds in smoke tests)."""
    env = {
        **os.environ,
        **the_lab.env(),
        "CI_IMAGES_REGISTRY": f"{target.host}/bench-tool",
        "CI_IMAGES_REGISTRY_USER": target.username,
        "CI_IMAGES_REGISTRY_PASSWORD": target.password,
    }
    argv: list[str | Path] = [
        sys.executable,
        "-m",
        "ci_images",
        "push-images",
        "--catalog",
        catalog,
        "--images",
        "local-kms,vault",
    ]
    argv += ["--jobs", "1", "--lock", workdir / "lock.json"]
    started = time.monotonic()
    done = proc.run(argv, env=env, timeout=7200)
    elapsed = time.monotonic() - started
    smoke = sum(float(m["seconds"]) for m in SMOKE_LINE.finditer(done.stderr))
    return elapsed, smoke


def run_plain_docker(
    target: Any, entries: list[Entry], bases: dict[tuple[str, str], str], workdir: Path
) -> float:
    config = workdir / "docker-config"
    config.mkdir()
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
    for image in engine.client.images.list():
        for tag in image.tags:
            if tag.startswith(prefixes):
                engine.remove_image(tag)


def main() -> int:
    args = arguments(__doc__)
    catalog = Path(args.catalog).resolve()
    standins, platforms, narrowed = standins_for(catalog)
    workdir = Path(tempfile.mkdtemp(prefix="ci-images-bench-cold-"))
    print(f"lab: starting in {workdir} ...", flush=True)
    the_lab = lab.lab_up(workdir / "lab", standins=standins, platforms=platforms, narrowed=narrowed)
    engine = Engine.connect()
    try:
        env = {**the_lab.env(), "CI": "true"}
        entries = built_entries(catalog, env)
        builds = sum(len(e.platforms) for e in entries)
        bases = pull_bases(engine, the_lab, entries)
        with empty_registry(the_lab, workdir / "tool-registry") as target:
            up0 = len(the_lab.upstream.requests())
            print(f"ci-images: push-images of {len(entries)} entries ({builds} builds) ...", flush=True)
            tool_s, smoke_s = run_ci_images(the_lab, target, catalog, workdir)
            tool_gets = manifest_gets(the_lab.upstream.requests()[up0:])
            tool_writes = writes(target.requests())
        remove_built(engine, ("ci-images/", f"{target.host}/"))
        with empty_registry(the_lab, workdir / "plain-registry") as target:
            up0 = len(the_lab.upstream.requests())
            print(f"plain docker: {builds} x (docker build + docker push) ...", flush=True)
            plain_s = run_plain_docker(target, entries, bases, workdir)
            plain_gets = manifest_gets(the_lab.upstream.requests()[up0:])
            plain_writes = writes(target.requests())
        remove_built(engine, (f"{target.host}/",))
        rows = [
            ["cold build, push to an empty registry", "seconds", "upstream manifest GETs", "target writes"],
            [
                f"ci-images push-images ({len(entries)} entries, {builds} builds)",
                f"{tool_s:.1f}",
                str(tool_gets),
                str(tool_writes),
            ],
            ["  of which smoke tests", f"{smoke_s:.1f}", "", ""],
            ["  without smoke tests", f"{tool_s - smoke_s:.1f}", "", ""],
            [
                f"plain docker build + docker push ({builds} builds)",
                f"{plain_s:.1f}",
                str(plain_gets),
                str(plain_writes),
            ],
        ]
        print(table(rows))
        ratio = (tool_s - smoke_s) / plain_s
        print(f"overhead ci-images (without smoke tests) / plain docker: {ratio:.2f} (goal <= {GOAL})")
        return 0 if ratio <= GOAL else 1
    finally:
        engine.close()
        if not args.keep_lab:
            lab.lab_down(workdir / "lab")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
