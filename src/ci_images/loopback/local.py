"""The embedded ``local`` registry on 127.0.0.1:5000: plain HTTP, data in the cache folder, kept running between runs.

Debian's ``docker-registry`` when installed, else a ``registry:2`` container on the engine. Its state file lets a
later process (``invoke registry-down``) find and stop it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import requests

from ci_images.errors import LabError
from ci_images.log import log
from ci_images.loopback.server import (
    LOOPBACK,
    START_TIMEOUT_S,
    RegistryServer,
    container_logs,
    remove_container,
    start_registry,
)

LOCAL_REGISTRY_PORT = 5000
LOCAL_CONTAINER_NAME = "ci-images-local-registry"


def ensure_local_registry(cache_dir: Path) -> RegistryServer:
    """The ``local`` registry on 127.0.0.1:5000 (plain HTTP, data in ``cache_dir``); reused when already running."""
    home = cache_dir / "local-registry"
    state = home / "registry.json"
    host = f"{LOOPBACK}:{LOCAL_REGISTRY_PORT}"
    if state.exists():
        server = RegistryServer.from_json(json.loads(state.read_text(encoding="utf-8")))
        if server.alive() and _answers(f"http://{host}/v2/"):
            log.debug(f"local registry already running on {host}")
            return server
        server.stop()
        state.unlink()
    if _answers(f"http://{host}/v2/"):
        raise LabError(
            f"something not started by ci-images already answers on {host}",
            fix="stop it, or push to it directly by naming that registry instead of `local`",
        )
    if shutil.which("docker-registry") is not None:
        server = start_registry(home, port=LOCAL_REGISTRY_PORT)
    else:
        server = _start_registry_container(home, host)
    (home / "registry.pid").write_text(f"{server.pid}\n", encoding="utf-8")
    state.write_text(json.dumps(server.to_json(), indent=2) + "\n", encoding="utf-8")
    log.info(f"local registry running on {host} (data in {server.data_dir})")
    return server


def stop_local_registry(cache_dir: Path) -> bool:
    """Stop the ``local`` registry started by ensure_local_registry; False when none was running."""
    home = cache_dir / "local-registry"
    state = home / "registry.json"
    if not state.exists():
        return False
    server = RegistryServer.from_json(json.loads(state.read_text(encoding="utf-8")))
    was_alive = server.alive()
    server.stop()
    state.unlink()
    (home / "registry.pid").unlink(missing_ok=True)
    return was_alive


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


def _start_registry_container(home: Path, host: str) -> RegistryServer:
    from ci_images.engine.client import Engine  # only without Debian's docker-registry

    data_dir = home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    container = Engine.connect().start_detached(
        "registry:2",
        name=LOCAL_CONTAINER_NAME,
        env={
            "REGISTRY_STORAGE_DELETE_ENABLED": "true",
            "REGISTRY_HTTP_ADDR": f"0.0.0.0:{LOCAL_REGISTRY_PORT}",
        },
        container_port=LOCAL_REGISTRY_PORT,
        host_port=LOCAL_REGISTRY_PORT,
        volumes={str(data_dir): "/var/lib/registry"},
        port_env=lambda port: {"REGISTRY_HTTP_ADDR": f"{LOOPBACK}:{port}"},  # host network: loopback only
    )
    server = RegistryServer(
        host=host,
        plain_http=True,
        ca_cert=None,
        username=None,
        password=None,
        data_dir=data_dir,
        log_path=home / "registry.log",
        pid=0,
        container=container,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _answers(f"http://{host}/v2/"):
            return server
        time.sleep(0.2)
    logs = container_logs(container)[-3000:]
    remove_container(container)
    raise LabError(f"registry:2 container did not answer on {host}; logs:\n{logs}", fix="check `docker logs`")


__all__ = [
    "LOCAL_REGISTRY_PORT",
    "ensure_local_registry",
    "stop_local_registry",
]
