"""Make sure a Docker engine answers (starting a background ``dockerd`` as root when none does) and QEMU binfmt works.

On a fresh lab machine nothing runs ``dockerd``; on a laptop or a GitHub runner one already answers and nothing here
changes anything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import requests

from ci_images import proc
from ci_images.cache import cache_home
from ci_images.engine.platforms import BINFMT_DIR
from ci_images.errors import CommandError, EngineError
from ci_images.log import log

START_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 25
# The started dockerd outlives this process on purpose; its handle is kept so it is not collected while running.
_STARTED: list[subprocess.Popen[bytes]] = []
# --bridge=none: no bridge network (nor iptables rules) is needed; builds and containers use the host's network,
# which keeps all traffic on loopback.
DOCKERD_ARGV = ("dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false")


def engine_answers(timeout_s: float = 5.0) -> bool:
    """True when the engine from the environment (DOCKER_HOST or the default socket) answers a ping."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://") and not _unix_socket_accepts(host.removeprefix("unix://"), timeout_s):
        # Checked first because the docker SDK leaks its socket when the connect itself fails.
        return False
    try:
        client = docker.from_env(timeout=int(max(timeout_s, 1)))
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.RequestException):
        return False
    finally:
        client.close()


def _unix_socket_accepts(path: str, timeout_s: float) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def ensure_engine(
    *, start: bool = True, run_dir: Path | None = None, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Return when an engine answers; otherwise start ``dockerd`` (root only) and wait for it, or raise EngineError."""
    ensure_binfmt()
    if engine_answers():
        return
    how = (
        "install Docker (Debian/Ubuntu: `apt-get install docker.io`, then run this as root so it can start "
        "`dockerd`), start Docker Desktop, or set DOCKER_HOST to an engine that answers `docker info`"
    )
    if not start:
        raise EngineError("no Docker engine answers", fix=how)
    if os.environ.get("DOCKER_HOST"):
        raise EngineError(f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}", fix=how)
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        why = "not running as root" if os.geteuid() != 0 else "`dockerd` is not installed"
        raise EngineError(f"no Docker engine answers, and one cannot be started here ({why})", fix=how)
    run_dir = run_dir or cache_home() / "dockerd"
    log_path = run_dir / "dockerd.log"
    log.info(f"starting dockerd in the background (log: {log_path})")
    process = proc.spawn(list(DOCKERD_ARGV), log_path=log_path)
    _STARTED.append(process)
    (run_dir / "dockerd.pid").write_text(f"{process.pid}\n", encoding="utf-8")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(
                f"dockerd exited with code {process.returncode} during start-up; log tail:\n{_tail(log_path)}",
                fix=f"read {log_path} (another dockerd may hold /var/run/docker.pid)",
            )
        if engine_answers(timeout_s=2):
            log.info(f"dockerd is up (pid {process.pid})")
            return
        time.sleep(0.5)
    raise EngineError(
        f"dockerd (pid {process.pid}) did not answer within {timeout_s:.0f} s; log tail:\n{_tail(log_path)}",
        fix=f"read {log_path}; stop it with `kill {process.pid}`",
    )


def ensure_binfmt() -> None:
    """Mount binfmt_misc and enable the QEMU handlers so foreign-architecture images run; never fatal, root only."""
    if os.geteuid() != 0:
        return
    if not (BINFMT_DIR / "status").exists():
        try:
            proc.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], timeout=30)
        except CommandError as exc:
            log.warning(f"cannot mount binfmt_misc (foreign-architecture images will not run): {exc.message}")
            return
    if shutil.which("update-binfmts") is None:
        return
    disabled = [p.name for p in BINFMT_DIR.glob("qemu-*") if not _handler_enabled(p)]
    missing = not any(BINFMT_DIR.glob("qemu-*"))
    if not disabled and not missing:
        return
    try:
        # --enable with no name (re)registers every handler binfmt-support knows about, e.g. after the mount.
        proc.run(["update-binfmts", "--enable"], timeout=60)
    except CommandError as exc:
        log.warning(f"cannot enable the QEMU binfmt handlers: {exc.message}")


def _handler_enabled(path: Path) -> bool:
    try:
        return path.read_text(encoding="ascii").startswith("enabled")
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "  (no log)"
    return "\n".join(f"  | {line}" for line in lines[-LOG_TAIL_LINES:])


def main() -> int:
    """``python -m ci_images.dockerd``: what the nox sessions run first; exit 5 with the fix when no engine can be had."""
    try:
        ensure_engine()
        ensure_binfmt()
    except EngineError as exc:
        log.error(exc.render())
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
