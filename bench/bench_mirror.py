"""Benchmark: mirror one multi-arch index into an empty registry with ci-images vs `skopeo copy --all`.

One run, one lab: the lab's upstream serves the stand-in index (two platforms, about 210 MB of layers); every
measurement copies it into a new, empty TLS registry with auth, so neither tool finds a blob it copied before.
Both tools run as the commands people type (`python -m ci_images push-images` for a catalog with one mirror entry,
no smoke test; `skopeo copy --all`), alternating, several rounds; the median counts. A third row times ci-images'
copy alone (registry.copy.copy_image in this process: no interpreter start-up, no plan, no tags), to tell the
per-byte path from the fixed cost of a run. All must end with the target serving upstream's digest. Upstream and
target requests come from the registries' own logs.

    nox -s bench -- mirror        # or: python bench/bench_mirror.py [--rounds 3] [--keep-lab]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import arguments, authfile, empty_registry, manifest_gets, median, table, writes

from ci_images import proc
from ci_images.lab import lab
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.copy import Endpoint, copy_image
from ci_images.registry.pool import ClientPool

GOAL, BUG = 1.0, 1.2
REPO, VERSION = "nsmithuk/local-kms", "3.12.0"


def run_ci_images(the_lab: Any, target: Any, workdir: Path) -> None:
    catalog = workdir / "images.yaml"
    catalog.write_text(
        f"""images:
  local-kms:
    source: docker.io/{REPO}
    target: mirror/{REPO}
    versions: ["{VERSION}"]
    platforms: all
    tags: ["{{version}}"]
    smoke: null
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        **the_lab.env(),
        "CI_IMAGES_REGISTRY": f"{target.host}/bench",
        "CI_IMAGES_REGISTRY_USER": target.username,
        "CI_IMAGES_REGISTRY_PASSWORD": target.password,
    }
    # As installed for users: Python keeps the modules' bytecode. (This machine sets PYTHONDONTWRITEBYTECODE, which
    # would charge every round with compiling the package again: ~0.1 s that no user pays.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv: list[str | Path] = [
        sys.executable,
        "-m",
        "ci_images",
        "push-images",
        "--catalog",
        catalog,
        "--lock",
        workdir / "lock.json",
    ]
    proc.run(argv, env=env, timeout=1800)


def run_skopeo(the_lab: Any, target: Any, workdir: Path) -> None:
    auth = authfile(target, workdir / "auth.json")
    source = f"docker://{the_lab.upstream.host}/{REPO}:{VERSION}"
    destination = f"docker://{target.host}/bench/mirror/{REPO}:{VERSION}"
    proc.run(
        ["skopeo", "copy", "--all", "--quiet", "--dest-authfile", auth, source, destination], timeout=1800
    )


def run_copy_only(the_lab: Any, target: Any, workdir: Path) -> None:
    upstream = ClientPool(lambda host: RegistryClient(host, role="upstream"))
    credentials = Credentials(target.username or "", target.password or "")
    pool = ClientPool(lambda host: RegistryClient(host, credentials=credentials))
    try:
        copy_image(
            Endpoint(upstream, the_lab.upstream.host, REPO),
            the_lab.standins[REPO][VERSION],
            Endpoint(pool, target.host, f"bench/mirror/{REPO}"),
        )
        pool.get(target.host).put_manifest(
            f"bench/mirror/{REPO}", VERSION, *_index(the_lab, pool.get(target.host))
        )
    finally:
        upstream.close()
        pool.close()


def _index(the_lab: Any, client: RegistryClient) -> tuple[bytes, str]:
    got = client.get_manifest(f"bench/mirror/{REPO}", the_lab.standins[REPO][VERSION])
    assert got is not None
    return got[1], got[0].media_type


TOOLS = {"ci-images": run_ci_images, "skopeo": run_skopeo, "ci-images copy only": run_copy_only}


def main() -> int:
    args = arguments(__doc__, catalog=False, rounds=3)
    if shutil.which("skopeo") is None:
        print("skopeo is not installed (apt-get install -y skopeo; .ci/setup does it)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ci-images-bench-mirror-"))
    print(f"lab: starting in {workdir} ...", flush=True)
    the_lab = lab.lab_up(
        workdir / "lab", standins={REPO: [VERSION]}, platforms=["linux/amd64", "linux/arm64"]
    )
    upstream_digest = the_lab.standins[REPO][VERSION]
    seconds: dict[str, list[float]] = {name: [] for name in TOOLS}
    counts: dict[str, tuple[int, int, int]] = {}
    try:
        for round_number in range(args.rounds):
            order = list(TOOLS) if round_number % 2 == 0 else list(reversed(TOOLS))
            for name in order:
                scratch = workdir / f"{name}-{round_number}"
                scratch.mkdir()
                with empty_registry(the_lab, scratch / "registry") as target:
                    upstream_before = len(the_lab.upstream.requests())
                    started = time.monotonic()
                    TOOLS[name](the_lab, target, scratch)
                    seconds[name].append(time.monotonic() - started)
                    client = RegistryClient(
                        target.host, credentials=Credentials(target.username or "", target.password or "")
                    )
                    held = client.head_manifest(f"bench/mirror/{REPO}", VERSION)
                    client.close()
                    if held is None or held.digest != upstream_digest:
                        print(
                            f"{name}: the target does not serve upstream's digest {upstream_digest}",
                            file=sys.stderr,
                        )
                        return 1
                    upstream = the_lab.upstream.requests()[upstream_before:]
                    counts[name] = (manifest_gets(upstream), len(upstream), writes(target.requests()))
                print(f"round {round_number + 1}: {name} {seconds[name][-1]:.2f} s", flush=True)
        rows = [
            [
                "copy of one 2-platform index (~210 MB) into an empty registry",
                "median s",
                "min s",
                "upstream manifest GETs",
                "upstream requests",
                "target writes",
            ]
        ]
        for name in TOOLS:
            gets, requests, target_writes = counts[name]
            rows.append(
                [
                    name,
                    f"{median(seconds[name]):.2f}",
                    f"{min(seconds[name]):.2f}",
                    str(gets),
                    str(requests),
                    str(target_writes),
                ]
            )
        print(table(rows))
        ratio = median(seconds["ci-images"]) / median(seconds["skopeo"])
        print(
            f"ratio ci-images/skopeo (median of {args.rounds}): {ratio:.2f} (goal <= {GOAL}; over {BUG} is a bug)"
        )
        copy_ratio = median(seconds["ci-images copy only"]) / median(seconds["skopeo"])
        print(
            f"ratio ci-images copy only/skopeo: {copy_ratio:.2f} (the per-byte path, without a run's fixed cost)"
        )
        return 0 if ratio <= BUG else 1
    finally:
        if not args.keep_lab:
            lab.lab_down(workdir / "lab")
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
