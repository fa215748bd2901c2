"""The lab's demo service: a small HTTP service this package has no probe module for (busybox httpd, built offline
from Debian's busybox-static), for the tests of the probes a catalog declares. Two images per platform: ``plain``
(no HEALTHCHECK) and ``health`` (the same with a HEALTHCHECK on GET /health). Its knobs are in
``lab/files/demo-service/demo-service.sh``.

Kept in the engine under a content hash of its files and the busybox package, like the stand-ins, but under its own
repository name, so the stand-ins' pruning of stale recipes leaves it alone.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from ci_images.engine.client import Engine
from ci_images.lab import assets as lab_assets
from ci_images.lab.standins import LAB_FILES, arch_of
from ci_images.log import log

DEMO_FILES = LAB_FILES / "demo-service"
DEMO_REPOSITORY = "ci-images-lab-demo"
CONTAINER_PORT = 8080
# How the demo service is moved to another port where containers share the host's network (port_env in a catalog).
PORT_ENV = {"LISTEN": "127.0.0.1:{port}"}


def demo_hash(platform: str) -> str:
    arch = arch_of(platform)
    sha = hashlib.sha256(
        f"{platform}\0{lab_assets.BUSYBOX_PACKAGE}:{lab_assets.DEBIAN_ARCH[arch]}\0".encode()
    )
    for path in sorted(DEMO_FILES.rglob("*")):
        if path.is_file():
            relative = path.relative_to(DEMO_FILES).as_posix()
            sha.update(f"{relative}\0{path.stat().st_mode & 0o777:o}\0".encode() + path.read_bytes() + b"\0")
    return sha.hexdigest()[:16]


def demo_ref(platform: str, *, healthcheck: bool) -> str:
    flavour = "health" if healthcheck else "plain"
    return f"{DEMO_REPOSITORY}:{flavour}-{arch_of(platform)}-{demo_hash(platform)}"


def ensure_demo_service(engine: Engine, platform: str, *, healthcheck: bool) -> str:
    """Build (or reuse) the demo service for ``platform``; returns its local reference."""
    plain = demo_ref(platform, healthcheck=False)
    if not engine.has_image(plain):
        with tempfile.TemporaryDirectory(prefix="ci-images-demo-") as tmp:
            context = Path(tmp)
            shutil.copytree(DEMO_FILES, context, dirs_exist_ok=True)
            shutil.copy2(lab_assets.busybox(arch_of(platform)), context / "busybox")
            engine.build(context, tag=plain, platform=platform, buildargs={}, labels={})
        log.info(f"lab: built {plain}")
    if not healthcheck:
        return plain
    ref = demo_ref(platform, healthcheck=True)
    if not engine.has_image(ref):
        engine.build(
            DEMO_FILES,
            tag=ref,
            platform=platform,
            buildargs={"BASE": plain},
            labels={},
            dockerfile="health.Dockerfile",
        )
        log.info(f"lab: built {ref}")
    return ref


__all__ = ["CONTAINER_PORT", "DEMO_REPOSITORY", "PORT_ENV", "demo_ref", "ensure_demo_service"]
