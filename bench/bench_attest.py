"""Benchmark: what attaching provenance and SBOMs costs a cold run of the shipped catalog, smoke tests included.

One lab, one key, two cold `push-images` of every entry of the catalog (built and mirrored, smoke tests on), each
into a new, empty registry, signing with the key: first with `--no-attest` (signatures only: the index and each
platform manifest), then with attestations (a provenance per digest, an SBOM per platform, syft scanning from the
target). Both start cold: the images the first run built (and pulled from its target for the mirrors' smoke tests)
are removed from the engine before the second; upstream bases are pulled by digest beforehand, for both alike. The
tool runs as people run it (`python -m ci_images push-images`, default --jobs). The second run's own summary line
gives the attestations it wrote and syft's scans.

    nox -s bench -- attest          # or: python bench/bench_attest.py [--catalog images.yaml] [--keep-lab]
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker.errors
from bench_cold import pull_bases
from common import arguments, empty_registry, manifest_gets, table, writes

from ci_images import proc
from ci_images.commands.options import PUSH, parse_options
from ci_images.commands.setup import prepare
from ci_images.engine.client import Engine
from ci_images.lab import lab
from ci_images.lab.cli import standins_for
from ci_images.plan.entries import Entry
from ci_images.sign.keys import generate_key_files

GOAL = 0.20
SUMMARY = re.compile(
    r"attestations: (?P<written>\d+) written, (?P<there>\d+) there already .*; SBOM scans: (?P<scans>\d+) "
    r"\(syft, (?P<syft>[0-9.]+) s\)"
)
PASSWORD = secrets.token_urlsafe(12)  # the throwaway key's


def catalog_entries(catalog: Path, env: dict[str, str]) -> list[Entry]:
    with prepare(parse_options(PUSH, {"catalog": str(catalog)}, env)) as setup:
        return list(setup.entries)


def push(
    the_lab: Any, target: Any, catalog: Path, workdir: Path, key: Path, *extra: str
) -> tuple[float, str]:
    """(seconds, the run's standard error) of one push-images into ``target``, signing with ``key``."""
    env = {
        **os.environ,
        **the_lab.env(),
        "CI_IMAGES_REGISTRY": f"{target.host}/bench-attest",
        "CI_IMAGES_REGISTRY_USER": target.username,
        "CI_IMAGES_REGISTRY_PASSWORD": target.password,
        "COSIGN_KEY": str(key),
        "COSIGN_PASSWORD": PASSWORD,
    }
    argv: list[str | Path] = [sys.executable, "-m", "ci_images", "push-images", "--catalog", catalog]
    argv += ["--lock", workdir / f"lock-{target.host.replace(':', '-')}.json", *extra]
    started = time.monotonic()
    done = proc.run(argv, env=env, timeout=7200)
    return time.monotonic() - started, done.stderr


def remove_built(engine: Engine, prefixes: tuple[str, ...]) -> None:
    """Remove every image tagged under ``prefixes``. The engine is shared: an image another job removes between the
    listing and the removal is gone already, which is what is wanted."""
    for image in engine.client.api.images():
        for tag in image.get("RepoTags") or []:
            if tag.startswith(prefixes):
                with contextlib.suppress(docker.errors.NotFound):
                    engine.client.api.remove_image(tag, force=True)


def main() -> int:
    args = arguments(__doc__)
    catalog = Path(args.catalog).resolve()
    standins, platforms, narrowed = standins_for(catalog)
    workdir = Path(tempfile.mkdtemp(prefix="ci-images-bench-attest-"))
    print(f"lab: starting in {workdir} ...", flush=True)
    the_lab = lab.lab_up(workdir / "lab", standins=standins, platforms=platforms, narrowed=narrowed)
    engine = Engine.connect()
    key, _, _ = generate_key_files(workdir / "keys", {"COSIGN_PASSWORD": PASSWORD})
    try:
        env = {**the_lab.env(), "CI": "true"}
        entries = catalog_entries(catalog, env)
        pull_bases(engine, the_lab, [e for e in entries if e.mode == "build"])
        runs: dict[str, tuple[float, int, int, str]] = {}
        for name, extra in (("signed", ("--no-attest",)), ("attested", ())):
            with empty_registry(the_lab, workdir / f"{name}-registry") as target:
                up0 = len(the_lab.upstream.requests())
                print(f"ci-images: push-images of {len(entries)} entries, {name} ...", flush=True)
                seconds, stderr = push(the_lab, target, catalog, workdir, key, *extra)
                gets = manifest_gets(the_lab.upstream.requests()[up0:])
                runs[name] = (seconds, gets, writes(target.requests()), stderr)
            remove_built(engine, ("ci-images/", f"{target.host}/"))
        found = SUMMARY.search(runs["attested"][3])
        assert found is not None, "the attested run printed no attestation summary"
        rows = [
            [
                "cold push-images, shipped catalog, smoke tests included",
                "seconds",
                "upstream manifest GETs",
                "target writes",
            ],
            *[
                [f"{name} ({len(entries)} entries)", f"{s:.1f}", str(g), str(w)]
                for name, (s, g, w, _) in runs.items()
            ],
            [
                f"  attestations written: {found['written']}; syft scans: {found['scans']}",
                f"{float(found['syft']):.1f}",
                "",
                "",
            ],
        ]
        print(table(rows))
        signed_s, attested_s = runs["signed"][0], runs["attested"][0]
        ratio = (attested_s - signed_s) / signed_s
        print(
            f"attestations cost {attested_s - signed_s:.1f} s of a {signed_s:.1f} s cold run: {ratio:.2f} "
            f"(goal <= {GOAL}); syft's scans took {float(found['syft']):.1f} s, beside the pipeline"
        )
        return 0 if ratio <= GOAL else 1
    finally:
        engine.close()
        if not args.keep_lab:
            lab.lab_down(workdir / "lab")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
