"""The demo-http probe: GET / on the lab's demo service, and the service got the environment this plugin asked for.

Written as another project would write a probe module: the four names of ci-images' built-in kms.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from ci_images.engine.service import RunningService
from ci_images.smoke.common import Deadline, ProbeFailed, loopback_session, request_timeout, wait_until_ready

CONTAINER_PORT = 8080
TOKEN_ENV = "DEMO_PLUGIN_TOKEN"


def port_env(port: int) -> dict[str, str]:
    """The demo service listens where LISTEN says."""
    return {"LISTEN": f"127.0.0.1:{port}"}


def environment() -> dict[str, str]:
    """A fresh value per run, which the probe then finds inside the container."""
    return {TOKEN_ENV: secrets.token_hex(8)}


def probe(
    service: RunningService, deadline: Deadline, *, env: Mapping[str, str], image_env: list[str]
) -> None:
    url = f"http://{service.host}:{service.port}/"
    session = loopback_session()

    def answers() -> bool:
        response = session.get(url, timeout=request_timeout(deadline, 5))
        return response.status_code == 200 and response.text.strip() == "demo-service"

    wait_until_ready(service, deadline, f"the demo service on {url}", answers)
    # busybox has no printenv: the shell reads the variable the container was started with.
    exit_code, output = service.exec(
        ["sh", "-c", f'echo "${TOKEN_ENV}"'], timeout_s=max(5.0, deadline.remaining())
    )
    if exit_code != 0 or output.strip() != env[TOKEN_ENV]:
        raise ProbeFailed(f"the service's {TOKEN_ENV} is {output.strip()!r}, not what environment() gave")
