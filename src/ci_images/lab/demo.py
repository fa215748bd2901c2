"""The lab's demo service: a small HTTP service this package has no probe module for (busybox httpd, built offline
from Debian's busybox-static), for the tests of the probes a catalog declares and for README's "Adding an image".

It is a stand-in like the others (``standins.py``, recipe ``lab/files/demo-service``), served by the lab's upstream as
``cilab/demo-service:VERSION`` for every platform of the lab: a catalog names it ``docker.io/cilab/demo-service``, and
``invoke lab-up`` serves it when the catalog does. Upstream it has no HEALTHCHECK, as many services have none; a
catalog's own build adds one (``health.Dockerfile`` is that build here). Its knobs are in
``lab/files/demo-service/demo-service.sh``.
"""

from __future__ import annotations

from ci_images.engine.client import Engine
from ci_images.lab import assets as lab_assets
from ci_images.lab.standins import LAB_FILES, arch_of, ensure_standin, version_hash
from ci_images.log import log

DEMO_FILES = LAB_FILES / lab_assets.DEMO_KIND
DEMO_UPSTREAM = "cilab/demo-service"  # its repository in the lab's upstream (docker.io/cilab/demo-service)
DEMO_VERSION = "1.0.0"
HEALTH_REPOSITORY = "ci-images-lab-demo"  # outside the stand-ins' prefix: their pruning leaves it alone
CONTAINER_PORT = 8080
# How the demo service is moved to another port where containers share the host's network (port_env in a catalog).
PORT_ENV = {"LISTEN": "127.0.0.1:{port}"}


def ensure_demo_service(engine: Engine, platform: str, *, healthcheck: bool) -> str:
    """Build (or reuse) the demo service for ``platform`` as upstream has it, or with a HEALTHCHECK on top; returns
    its local reference."""
    plain = ensure_standin(engine, DEMO_UPSTREAM, DEMO_VERSION, platform)
    if not healthcheck:
        return plain
    digest = version_hash(lab_assets.DEMO_KIND, platform, DEMO_VERSION)
    ref = f"{HEALTH_REPOSITORY}:health-{arch_of(platform)}-{digest}"
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


__all__ = ["CONTAINER_PORT", "DEMO_UPSTREAM", "DEMO_VERSION", "PORT_ENV", "ensure_demo_service"]
