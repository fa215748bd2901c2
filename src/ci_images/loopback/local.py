"""The embedded ``local`` registry on 127.0.0.1 (port 5000 unless ``local:PORT``): plain HTTP, data in the cache
folder, kept running between runs so a later push finds what an earlier one left.

Debian's ``docker-registry`` when installed, else a ``registry:2`` container on the engine. A state file per port lets
a later process (``invoke registry-down``) find and stop it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import requests

from ci_images.errors import RegistryError
from ci_images.log import log
from ci_images.loopback.server import (
    START_TIMEOUT_S,
    RegistryServer,
    container_logs,
    remove_container,
    start_registry,
)
from ci_images.oci import LOCAL_REGISTRY_PORT, LOOPBACK

LOCAL_CONTAINER_NAME = "ci-images-local-registry"


def local_home(cache_dir: Path, port: int) -> Path:
    """Where the local registry on ``port`` keeps its data, state file and log."""
    return cache_dir / "local-registry" / str(port)


def ensure_local_registry(cache_dir: Path, port: int = LOCAL_REGISTRY_PORT) -> RegistryServer:
    """The ``local`` registry on 127.0.0.1:``port`` (plain HTTP); reused when it is already running."""
    home = local_home(cache_dir, port)
    state = home / "registry.json"
    host = f"{LOOPBACK}:{port}"
    if state.exists():
        server = RegistryServer.from_json(json.loads(state.read_text(encoding="utf-8")))
        if server.alive() and _answers(f"http://{host}/v2/"):
            log.debug(f"local registry already running on {host}")
            return server
        server.stop()
        state.unlink()
    if _answers(f"http://{host}/v2/"):
        raise RegistryError(
            f"something not started by ci-images already answers on {host}",
            fix=f"stop it, use another port (--registry local:PORT), or push to it by naming {host}/PATH",
        )
    home.mkdir(parents=True, exist_ok=True)
    if shutil.which("docker-registry") is not None:
        server = start_registry(home, port=port)
    else:
        server = _start_registry_container(home, host, port)
    state.write_text(json.dumps(server.to_json(), indent=2) + "\n", encoding="utf-8")
    log.info(
        f"local registry running on {host} (data in {server.data_dir}; stop it with `invoke registry-down`)"
    )
    return server


def stop_local_registry(cache_dir: Path, port: int = LOCAL_REGISTRY_PORT) -> bool:
    """Stop the ``local`` registry started by ensure_local_registry; False when none was running."""
    state = local_home(cache_dir, port) / "registry.json"
    if not state.exists():
        return False
    server = RegistryServer.from_json(json.loads(state.read_text(encoding="utf-8")))
    was_alive = server.alive()
    server.stop()
    state.unlink()
    return was_alive


def _answers(url: str) -> bool:
    with requests.Session() as session:
        session.trust_env = False  # loopback: never through a proxy from the environment
        try:
            return session.get(url, timeout=2).status_code in (200, 401)
        except requests.RequestException:
            return False


def _start_registry_container(home: Path, host: str, port: int) -> RegistryServer:
    from ci_images.engine.client import Engine  # only without Debian's docker-registry

    data_dir = home / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    container = Engine.connect().start_detached(
        "registry:2",
        name=f"{LOCAL_CONTAINER_NAME}-{port}",
        env={
            "REGISTRY_STORAGE_DELETE_ENABLED": "true",
            "REGISTRY_HTTP_ADDR": f"0.0.0.0:{LOCAL_REGISTRY_PORT}",
        },
        container_port=LOCAL_REGISTRY_PORT,
        host_port=port,
        volumes={str(data_dir): "/var/lib/registry"},
        port_env=lambda bound: {"REGISTRY_HTTP_ADDR": f"{LOOPBACK}:{bound}"},  # host network: loopback only
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
    raise RegistryError(
        f"registry:2 container did not answer on {host}; logs:\n{logs}", fix="check `docker logs`"
    )


__all__ = [
    "LOCAL_REGISTRY_PORT",
    "ensure_local_registry",
    "stop_local_registry",
]
