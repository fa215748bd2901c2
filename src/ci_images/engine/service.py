"""What Engine.run_service hands out: a started service container and the loopback port it answers on.

Kept apart from engine.py: the smoke probes work with one running container through it, never with the engine.
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests

from ci_images.errors import EngineError


@dataclass
class RunningService:
    """A started service container; ``host:port`` is where it answers on this machine's loopback."""

    container: Any  # docker.models.containers.Container (the SDK is untyped)
    host: str
    port: int  # where the service's own port answers; 0 when it has none
    ports: Mapping[int, int] = field(
        default_factory=dict
    )  # container port -> loopback port, every one published

    def logs(self, tail: int = 200) -> str:
        """The container's combined stdout/stderr (last ``tail`` lines); never raises (used in error paths)."""
        try:
            raw: bytes = self.container.logs(stdout=True, stderr=True, tail=tail)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return f"<logs unavailable: {exc}>"
        return raw.decode("utf-8", errors="replace")

    def status(self) -> str:
        """``running``, ``exited``, ... as the engine sees it now; ``removed`` once it is gone (an interrupted run
        removes its containers while a probe may still be waiting on one)."""
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return "removed"
        except (docker.errors.DockerException, requests.RequestException):
            return "unknown"
        return str(self.container.status)

    def exit_code(self) -> int | None:
        """Exit code of a stopped container (from the last status())."""
        code = (self.container.attrs.get("State") or {}).get("ExitCode")
        return int(code) if code is not None else None

    def exec(self, argv: Sequence[str], *, timeout_s: float) -> tuple[int | None, str]:
        """Run ``argv`` inside the container; (exit code, output), exit code None when it ran past ``timeout_s``.

        The SDK's exec has no timeout of its own: it runs in a daemon thread and is abandoned on timeout (removing
        the container ends it).
        """
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = self.container.exec_run(list(argv), stdout=True, stderr=True)
            except (docker.errors.DockerException, requests.RequestException) as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=target, name=f"exec-{self.container.name}", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            return None, f"no result after {timeout_s:.0f} s"
        if "error" in outcome:
            raise EngineError(
                f"could not exec {list(argv)!r} in {self.container.name}: {outcome['error']}",
                fix="check that the container is still running and the command exists in the image",
            )
        exit_code, output = outcome["result"]
        return exit_code, (output or b"").decode("utf-8", errors="replace")

    def read_file(self, path: str) -> bytes:
        """Contents of one regular file inside the container."""
        try:
            chunks, _stat = self.container.get_archive(path)
            data = b"".join(chunks)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise EngineError(
                f"could not read {path} from container {self.container.name}: {exc}",
                fix="check the path exists in the image",
            ) from exc
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = next((m for m in archive.getmembers() if m.isfile()), None)
            extracted = archive.extractfile(member) if member is not None else None
            if extracted is None:
                raise EngineError(f"{path} in container {self.container.name} is not a regular file")
            return extracted.read()
