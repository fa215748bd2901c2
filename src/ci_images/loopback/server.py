"""Throwaway OCI registries on loopback: Debian's ``docker-registry`` (distribution 2.8), optionally TLS and either
htpasswd or a token service (``auth: token``).

Used by the image lab (an "upstream" registry standing in for Docker Hub, a "target" registry standing in for GHCR)
and by the embedded ``local`` registry on 127.0.0.1:5000. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from ci_images import proc
from ci_images.errors import RegistryError
from ci_images.log import log
from ci_images.oci import LOOPBACK, certs_d_ca, free_loopback_port

if TYPE_CHECKING:
    from ci_images.engine.client import Engine
from ci_images.loopback.certs import CertificateAuthority, write_private

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 25
# Popen handles of the registries this process started: kept so they are reaped on stop (and no ResourceWarning
# "subprocess is still running" fires when a handle is collected while its registry runs on).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# One access-log line per request, Apache combined format: `IP - USER [DATE] "METHOD URI HTTP/1.1" STATUS ...`.
_ACCESS_LINE = re.compile(
    r'^\S+ - \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>[0-9]{3})'
)


@dataclass(frozen=True)
class TokenAuth:
    """``auth: token`` for distribution: where clients get tokens, and what the registry checks in them.

    distribution's registry/auth/token/accesscontroller.go (checkOptions, newAccessController): all four are
    required; a token's ``iss`` must be ``issuer``, its ``aud`` ``service``, and its ``x5c`` chain must end in a
    certificate of ``rootcertbundle`` (PEM). The registry sends ``realm`` and ``service`` in its 401 challenge.
    """

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


# -- registry processes ---------------------------------------------------------------------------------------------


@dataclass
class RegistryServer:
    """A running registry; serialisable (to_json/from_json) so a later process can find and stop it."""

    host: str
    plain_http: bool
    ca_cert: Path | None
    username: str | None
    password: str | None = field(repr=False)
    data_dir: Path
    log_path: Path
    pid: int
    config_path: Path | None = None
    installed_ca: Path | None = None  # /etc/docker/certs.d/HOST/ca.crt written by start_registry
    # Set when the registry runs as a `registry:2` container instead of a process.
    container: str | None = None
    log_offset: int = 0  # requests() ignores the log before this byte (see reset_requests)

    @property
    def port(self) -> int:
        return int(self.host.rpartition(":")[2])

    @property
    def url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    def requests(self) -> list[tuple[str, str]]:
        """(METHOD, URI) of every request the registry has answered so far, in order."""
        return [(method, uri) for method, uri, _ in self.answers()]

    def answers(self) -> list[tuple[str, str, int]]:
        """(METHOD, URI, STATUS) of every request the registry has answered so far, in order."""
        if self.container is not None:
            text = container_logs(self.container)
        else:
            try:
                with self.log_path.open("rb") as fh:
                    fh.seek(self.log_offset)
                    text = fh.read().decode("utf-8", errors="replace")
            except FileNotFoundError:
                return []
        return [
            (m["method"], m["uri"], int(m["status"])) for m in map(_ACCESS_LINE.match, text.splitlines()) if m
        ]

    def reset_requests(self) -> None:
        """Make requests() forget what was logged so far (e.g. the lab's own pushes before a test runs)."""
        if self.container is None:
            with contextlib.suppress(FileNotFoundError):
                self.log_offset = self.log_path.stat().st_size

    def alive(self) -> bool:
        if self.container is not None:
            return _container_running(self.container)
        return _is_registry_process(self.pid, self.config_path)

    def stop(self) -> None:
        """Stop the registry (idempotent) and remove the CA file it installed for the engine."""
        child = _CHILDREN.pop(self.pid, None)
        if self.container is not None:
            remove_container(self.container)
        elif child is not None:
            child.terminate()
            try:
                child.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        elif _is_registry_process(self.pid, self.config_path):
            _terminate(self.pid)
        if self.installed_ca is not None:
            self.installed_ca.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty (someone else's files) or already gone
                self.installed_ca.parent.rmdir()

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegistryServer:
        paths = {"ca_cert", "data_dir", "log_path", "config_path", "installed_ca"}
        values: dict[str, Any] = {
            k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()
        }
        server = cls(**values)
        if server.password:
            log.add_mask(server.password)
        return server


def start_registry(
    workdir: Path,
    *,
    port: int | None = None,
    ca: CertificateAuthority | None = None,
    htpasswd: tuple[str, str] | None = None,
    token: TokenAuth | None = None,
) -> RegistryServer:
    """Start ``docker-registry serve`` on 127.0.0.1 (a free port unless given) and wait until /v2/ answers.

    ``htpasswd`` (user, password) or ``token`` (a token service's realm) makes it ask for credentials.
    """
    if htpasswd is not None and token is not None:
        raise ValueError("a registry takes htpasswd or token auth, not both")
    if shutil.which("docker-registry") is None:
        raise RegistryError(
            "Debian's docker-registry is not installed",
            fix="apt-get install docker-registry (distribution 2.8)",
        )
    workdir.mkdir(parents=True, exist_ok=True)
    tls: tuple[Path, Path] | None = ca.issue_server_cert(workdir / "tls") if ca is not None else None
    auth_file: Path | None = None
    if htpasswd is not None:
        user, password = htpasswd
        log.add_mask(password)
        auth_file = workdir / "htpasswd"
        write_private(auth_file, _htpasswd_line(user, password).encode())
    # A port picked by the kernel can be taken by someone else before the registry binds it: try a few.
    attempts = 1 if port is not None else 3
    last_error: RegistryError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_loopback_port()
        try:
            return _start_once(workdir, chosen, ca, tls, auth_file, htpasswd, token)
        except RegistryError as exc:
            last_error = exc
            if "address already in use" not in exc.message:
                raise
    assert last_error is not None
    raise last_error


def _start_once(
    workdir: Path,
    port: int,
    ca: CertificateAuthority | None,
    tls: tuple[Path, Path] | None,
    auth_file: Path | None,
    htpasswd: tuple[str, str] | None,
    token: TokenAuth | None = None,
) -> RegistryServer:
    host = f"{LOOPBACK}:{port}"
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    http: dict[str, Any] = {
        "addr": host,
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if tls is not None:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(data_dir)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth_file is not None:
        config["auth"] = {"htpasswd": {"realm": "ci-images-lab", "path": str(auth_file)}}
    if token is not None:
        config["auth"] = {"token": {**asdict(token), "rootcertbundle": str(token.rootcertbundle)}}
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")  # JSON is YAML
    log_path = workdir / "registry.log"
    log_path.unlink(missing_ok=True)  # requests() must only see this run's traffic
    installed_ca = _install_engine_ca(host, ca) if ca is not None else None
    process = proc.spawn(["docker-registry", "serve", str(config_path)], log_path=log_path)
    _CHILDREN[process.pid] = process
    server = RegistryServer(
        host=host,
        plain_http=tls is None,
        ca_cert=ca.cert_path if ca is not None else None,
        username=htpasswd[0] if htpasswd else None,
        password=htpasswd[1] if htpasswd else None,
        data_dir=data_dir,
        log_path=log_path,
        pid=process.pid,
        config_path=config_path,
        installed_ca=installed_ca,
    )
    try:
        _wait_ready(server, lambda: process.poll() is None)
    except RegistryError:
        server.stop()
        raise
    log.debug(f"registry {server.url} up (pid {server.pid}, data {data_dir})")
    return server


def _htpasswd_line(user: str, password: str) -> str:
    # apache2-utils' htpasswd (bcrypt, -B): the registry only accepts bcrypt entries.
    result = proc.run(["htpasswd", "-Bbn", user, password])
    return result.stdout.strip() + "\n"


def _install_engine_ca(host: str, ca: CertificateAuthority) -> Path | None:
    """Make the engine trust the lab CA for ``host`` (the engine reads certs.d per pull/push: no restart)."""
    target = certs_d_ca(host)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca.cert_path, target)
    except OSError as exc:
        log.warning(
            f"cannot install the lab CA as {target} ({exc}): the engine will not trust {host}; "
            "run as root or copy the CA there yourself"
        )
        return None
    return target


def _wait_ready(server: RegistryServer, running: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    verify: str | bool = str(server.ca_cert) if server.ca_cert else True
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not running():
            raise RegistryError(
                f"registry on {server.host} exited during start-up; log tail:\n{_tail(server.log_path)}",
                fix=f"read {server.log_path}; `address already in use` means the port is taken",
            )
        try:
            # 401 (auth required) also means it is serving.
            resp = requests.get(f"{server.url}/v2/", verify=verify, timeout=2)
            if resp.status_code in (200, 401):
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RegistryError(
        f"registry on {server.host} did not answer /v2/ within {START_TIMEOUT_S:.0f} s ({last}); "
        f"log tail:\n{_tail(server.log_path)}",
        fix=f"read {server.log_path}",
    )


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "  (no log)"
    return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:])


def _is_registry_process(pid: int, config_path: Path | None) -> bool:
    """True when ``pid`` is still the registry we started (pids get reused after a reboot or a crash)."""
    if pid <= 0:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not argv or not argv[0].endswith(b"docker-registry"):
        return False
    return config_path is None or str(config_path).encode() in argv


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            # Reap it when it is our child; otherwise just poll for its disappearance.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except (OSError, IndexError):
        return True


# -- registries run as a `registry:2` container (the local registry when docker-registry is missing) ---------------


def _engine() -> Engine:
    from ci_images.engine.client import Engine  # only for registries that run as containers

    return Engine.connect()


def container_logs(container: str) -> str:
    return _engine().container_logs(container)


def _container_running(container: str) -> bool:
    return _engine().container_running(container)


def remove_container(container: str) -> None:
    _engine().remove_container(container)


__all__ = [
    "RegistryServer",
    "TokenAuth",
    "start_registry",
]
