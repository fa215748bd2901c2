"""The one engine client: a thin adapter over the docker SDK.

Works unchanged on an ordinary engine (bridge network: default networking, ports published on 127.0.0.1) and on an
engine started with ``--bridge=none`` (no bridge network: builds and containers use the host's network, and a
service is told which loopback port to listen on instead of having its port published).
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.utils
import requests
import urllib3.exceptions

from ci_images.engine.failures import engine_fix, is_transient, pull_error
from ci_images.engine.gate import BuildGate, builds, removes
from ci_images.engine.platforms import binfmt_enabled, kernel_arch, oci_arch, same_os_arch
from ci_images.engine.runs import (
    DEFAULT_MAX_AGE_S,
    SMOKE_LABEL,
    SMOKE_PREFIX,
    Reaped,
    end_run,
    make_marker,
    reap,
    release,
    this_run,
)
from ci_images.engine.service import RunningService
from ci_images.errors import BuildError, EngineError
from ci_images.log import log
from ci_images.oci import LOOPBACK, free_loopback_port
from ci_images.retry import RetryPolicy

CONTAINER_PREFIX = SMOKE_PREFIX
# Lets anyone sharing the engine find (and clean up) what a crashed run left behind; the run's full labels
# (engine/runs.py) say which process that was.
CONTAINER_LABEL = SMOKE_LABEL  # value: the id of the run that started the container
# A long-lived service (the embedded registry) outlives the run that started it: it carries no run label.
SERVICE_LABEL = "io.github.getsops.ci-images.service"  # value: its name
_begun: set[str] = set()  # the runs (processes) that have reaped and made their marker
# What the SDK raises: its own errors, and requests' (a connection refused or cut). Reads of a raw stream raise
# urllib3's, which requests does not wrap: added where a stream is read.
_ENGINE_ERRORS = (docker.errors.DockerException, requests.RequestException)
BUILD_LOG_TAIL = 30
BUILD_ATTEMPTS = 3
# What the classic builder says when a step image it took from its cache was removed before it used it.
CACHE_GONE = re.compile(
    r"failed to get digest sha256:[0-9a-f]+: .*no such file or directory|No such image: sha256:"
)
# A build has no natural upper bound on quiet periods (a RUN step under QEMU can print nothing for minutes), so the
# HTTP read timeout is long but still finite.
BUILD_TIMEOUT_S = 3600


def _missing_engine_socket(env: Mapping[str, str]) -> str | None:
    """The engine's unix socket path when DOCKER_HOST (or the default) names one that does not exist."""
    host = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        path = Path(host.removeprefix("unix://"))
        if not path.exists():
            return str(path)
    return None


def _release_failed_connection(exc: BaseException) -> None:
    """Free the socket a failed SDK connect leaves in its traceback now, quietly, instead of at some later GC."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        seen: BaseException | None = exc
        while seen is not None:
            if seen.__traceback__ is not None:
                traceback.clear_frames(seen.__traceback__)
            seen = seen.__cause__ or seen.__context__


class Engine:
    """Builds, inspects, saves and runs images on one Docker engine."""

    def __init__(self, client: Any, *, network_mode: str | None, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.network_mode = network_mode
        self.retry = retry or RetryPolicy()
        self.run = this_run()  # one per process: names what it creates in the engine
        self.run_id = self.run.id
        self.gate = BuildGate()  # a removal never runs beside a build (gate.py says why)

    @classmethod
    def connect(cls) -> Engine:
        """Connect to the engine from the environment (DOCKER_HOST or the default socket)."""
        missing = _missing_engine_socket(os.environ)
        if missing:
            # Checked up front: the SDK leaks its socket when connecting to nothing (a ResourceWarning later).
            raise EngineError(f"no Docker engine: {missing} does not exist", fix=engine_fix())
        try:
            client = docker.from_env()
            client.ping()
            has_bridge = bool(client.networks.list(names=["bridge"]))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            _release_failed_connection(exc)
            raise EngineError(f"no Docker engine answers: {exc}", fix=engine_fix()) from exc
        # Without a bridge network containers cannot get their own network namespace with connectivity:
        # share the host's instead (traffic stays on loopback).
        return cls(client, network_mode=None if has_bridge else "host")

    def close(self) -> None:
        """Close the SDK's connection pool."""
        self.client.close()

    # -- platforms ---------------------------------------------------------------------------------------------

    def host_platform(self) -> str:
        info = self._call("read engine info", self.client.info)
        return f"{info.get('OSType', 'linux')}/{oci_arch(str(info.get('Architecture', '')))}"

    def can_run(self, platform: str) -> bool:
        """Native platform, or one this host emulates with a registered and enabled QEMU binfmt handler.

        The binfmt check reads this machine's /proc: it assumes the engine runs here, as it does in CI.
        """
        wanted = kernel_arch(platform)
        if wanted == kernel_arch(self.host_platform()):
            return True
        return binfmt_enabled(wanted)

    # -- images ------------------------------------------------------------------------------------------------

    @builds
    def build(
        self,
        context: Path,
        *,
        tag: str,
        platform: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        dockerfile: str | None = None,
    ) -> str:
        """Build ``context`` with the classic builder and return the image id (``sha256:...``).

        ``dockerfile`` is relative to ``context`` (default ``Dockerfile``). A build whose cached step image another
        run removed meanwhile (it pruned its own build's parents, which were this build's cache: "failed to get
        digest ...: no such file or directory") is built again, without that cache, up to BUILD_ATTEMPTS times.
        """
        for attempt in range(1, BUILD_ATTEMPTS + 1):
            try:
                return self._build_once(
                    context,
                    tag=tag,
                    platform=platform,
                    buildargs=buildargs,
                    labels=labels,
                    dockerfile=dockerfile,
                )
            except BuildError as exc:
                if attempt == BUILD_ATTEMPTS or not CACHE_GONE.search(exc.message.rpartition("\n")[2]):
                    raise
                log.warning(
                    f"build of {tag} ({platform}): another run removed a cached step image; building again"
                )
        raise AssertionError("unreachable")

    def _build_once(
        self,
        context: Path,
        *,
        tag: str,
        platform: str,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        dockerfile: str | None,
    ) -> str:
        lines: list[str] = []
        image_id: str | None = None
        failed = False
        try:
            stream = self.client.api.build(
                path=str(context),
                dockerfile=dockerfile,
                tag=tag,
                platform=platform,
                buildargs=dict(buildargs),
                labels=dict(labels),
                network_mode=self.network_mode,
                pull=False,  # bases are resolved and pulled by digest beforehand; never fetch implicitly
                rm=True,
                forcerm=True,
                decode=True,
                timeout=BUILD_TIMEOUT_S,
            )
            # Read to the end even after an error message: a half-read stream leaves the engine socket open.
            for chunk in stream:
                if "stream" in chunk:
                    text = str(chunk["stream"]).rstrip("\n")
                    if text.strip():
                        lines.extend(text.splitlines())
                        log.debug(f"build {tag}: {text}")
                if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                    image_id = str(chunk["aux"]["ID"])
                if "error" in chunk:
                    failed = True
                    lines.append(
                        f"ERROR: {(chunk.get('errorDetail') or {}).get('message') or chunk['error']}"
                    )
        except (*_ENGINE_ERRORS, urllib3.exceptions.HTTPError) as exc:  # urllib3's: a cut stream
            lines.append(f"ERROR: {exc}")
            raise BuildError(
                self._build_failure(context, tag, platform, lines),
                fix="check that the base image exists locally for this platform and the engine is healthy",
            ) from exc
        if failed:
            dockerfile_path = context / (dockerfile or "Dockerfile")
            raise BuildError(
                self._build_failure(context, tag, platform, lines),
                fix=f"fix {dockerfile_path} or its build arguments (the log tail above shows the failing step)",
            )
        if image_id is None:
            # Engines that do not send the aux ID still tagged the result.
            image_id = str(self._call(f"inspect {tag}", self.client.images.get, tag).id)
        return image_id

    @staticmethod
    def _build_failure(context: Path, tag: str, platform: str, lines: list[str]) -> str:
        tail = "\n".join(f"  | {line}" for line in lines[-BUILD_LOG_TAIL:])
        return f"build of {tag} ({platform}) from {context} failed; last build log lines:\n{tail}"

    def local_tags(self, repository: str) -> list[str]:
        """The tags of the images the engine holds under ``repository`` (``ci-images/vault``)."""
        images = self._call(f"list images of {repository}", self.client.images.list, name=repository)
        return [
            tag.rpartition(":")[2]
            for image in images
            for tag in image.tags
            if tag.rpartition(":")[0] == repository
        ]

    def has_image(self, ref: str) -> bool:
        try:
            self.client.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return False
        except _ENGINE_ERRORS as exc:
            raise self._engine_error(f"inspect {ref}", exc) from exc
        return True

    def pull(self, ref: str, *, platform: str, auth: Mapping[str, str] | None = None) -> None:
        """Pull ``ref`` for ``platform`` unless the engine already holds it; transient failures (429, 5xx, a reset or
        cut-off connection, a timeout) are retried with the registry client's bounded policy.

        A digest reference already present for this platform is not pulled again: its content cannot have changed,
        and every upstream pull counts against the registry's rate limit.
        """
        if "@sha256:" in ref and self.has_image(ref) and same_os_arch(self.image_platform(ref), platform):
            log.debug(f"pull {ref} ({platform}): already present")
            return
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure = self._pull_once(ref, platform=platform, auth=auth)
            if failure is None:
                return
            wait = (
                self.retry.next_wait(attempt, time.monotonic() - started) if is_transient(failure) else None
            )
            if wait is None:
                raise pull_error(
                    ref, platform, failure if attempt == 1 else f"{failure} (after {attempt} attempts)"
                )
            log.warning(
                f"pull {ref} ({platform}): {failure}; retry {attempt}/{self.retry.max_attempts} in {wait:.1f} s"
            )
            time.sleep(wait)

    def _pull_once(self, ref: str, *, platform: str, auth: Mapping[str, str] | None) -> str | None:
        """One pull; the engine's error text, or None when it succeeded."""
        repository, tag_or_digest = docker.utils.parse_repository_tag(ref)
        failure: str | None = None
        try:
            stream = self.client.api.pull(
                repository,
                tag=tag_or_digest or "latest",
                stream=True,
                decode=True,
                platform=platform,
                auth_config=dict(auth) if auth else None,
            )
            for chunk in stream:  # read to the end: progress lines, then maybe an error
                if "error" in chunk:
                    failure = str((chunk.get("errorDetail") or {}).get("message") or chunk["error"])
        except docker.errors.APIError as exc:
            failure = str(exc.explanation or exc)
        except (*_ENGINE_ERRORS, urllib3.exceptions.HTTPError) as exc:  # urllib3's: a cut stream
            raise self._engine_error(f"pull {ref}", exc) from exc
        return failure

    def tag(self, image: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":")
        if not repo or "/" in tag:  # "host:5000/repo" has a colon but no tag
            repo, tag = ref, "latest"
        ok = self._call(f"tag {image} as {ref}", self.client.api.tag, image, repo, tag, force=True)
        if not ok:
            raise EngineError(f"the engine refused to tag {image} as {ref}", fix="check the reference syntax")

    def image_attrs(self, image: str) -> dict[str, Any]:
        """The full ``docker image inspect`` document."""
        attrs: dict[str, Any] = self._call(f"inspect {image}", self.client.api.inspect_image, image)
        return attrs

    def image_config(self, image: str) -> dict[str, Any]:
        """The image's runtime config (Env, Entrypoint, Cmd, Healthcheck, Labels, ...)."""
        config: dict[str, Any] = self.image_attrs(image).get("Config") or {}
        return config

    def image_labels(self, image: str) -> dict[str, str]:
        return dict(self.image_config(image).get("Labels") or {})

    def image_platform(self, image: str) -> str:
        attrs = self.image_attrs(image)
        platform = f"{attrs.get('Os', 'linux')}/{attrs.get('Architecture', '')}"
        if attrs.get("Variant"):
            platform += f"/{attrs['Variant']}"
        return platform

    def save(self, image: str) -> Iterator[bytes]:
        """The ``docker save`` tar stream of one image. The SDK reads the engine's answer at the first read of the
        stream, so an error answer (an image another run removed: 404 or 500) and a cut stream come from the
        iteration: EngineError there too."""
        stream: Iterator[bytes] = self._call(f"save {image}", self.client.api.get_image, image)
        return self._guarded_stream(f"export {image}", stream)

    def _guarded_stream(self, what: str, stream: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from stream
        except (*_ENGINE_ERRORS, urllib3.exceptions.HTTPError, OSError) as exc:  # urllib3's: a cut stream
            raise self._engine_error(what, exc) from exc

    @removes
    def remove_image(self, image: str) -> None:
        """Remove an image, forced (all its tags when given an id); a missing image is not an error. The engine
        still refuses while a running container uses it (409): EngineError in its words."""
        try:
            self.client.images.remove(image, force=True)
        except docker.errors.ImageNotFound:
            return
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise self._engine_error(f"remove image {image}", exc) from exc

    @removes  # it prunes the image's unused parents, which a build of this process may be taking from its cache
    def release(self, ref: str) -> str:
        """Remove the reference ``ref`` and the image with its last reference, never forced: an image a container
        uses (another run's) stays. "removed", "gone", "in use", or the engine's words for another refusal."""
        return release(self.client, ref)

    # -- runs ----------------------------------------------------------------------------------------------------

    def begin_run(self, *, max_age_s: float = DEFAULT_MAX_AGE_S, created: str | None = None) -> list[Reaped]:
        """Once per process: remove what ended runs left in the engine (engine/runs.py), then mark this run, and
        remove what it leaves when the process ends. ``created``: the created label this run's builds carry (its
        marker keeps it, so step images of a build killed half-way can be told). Returns what was removed."""
        if self.run_id in _begun:
            return []
        try:
            reaped = self.reap(max_age_s=max_age_s)
        except EngineError as exc:  # reaping is housekeeping: the run goes on, and the next run tries again
            log.warning(f"could not remove what ended runs left in the engine: {exc.render()}")
            reaped = []
        self._call("make this run's marker volume", make_marker, self.client, self.run, created)
        _begun.add(self.run_id)
        atexit.register(end_run, self.client, self.run, log.warning)
        return reaped

    @removes
    def reap(self, *, max_age_s: float = DEFAULT_MAX_AGE_S) -> list[Reaped]:
        """Remove the containers, temporary images and markers of ended runs; what could not go is warned about."""
        reaped: list[Reaped] = self._call(
            "list what ended runs left", reap, self.client, self.run, max_age_s=max_age_s, warn=log.warning
        )
        return reaped

    # -- containers --------------------------------------------------------------------------------------------

    @contextmanager
    def run_service(
        self,
        image: str,
        *,
        platform: str,
        env: Mapping[str, str],
        container_port: int | None,
        port_env: Callable[[int], Mapping[str, str]] | None,
        extra_ports: Sequence[int] = (),
    ) -> Iterator[RunningService]:
        """Run ``image`` detached and yield where it answers; the container is always removed afterwards.

        On a host network the service is told to listen on a free loopback port through ``port_env``; without
        ``port_env`` it listens on ``container_port`` itself, as do ``extra_ports`` (shared with the host). With a
        bridge network every port is published on loopback.
        """
        name = f"{CONTAINER_PREFIX}{secrets.token_hex(6)}"
        options: dict[str, Any] = {
            "name": name,
            "platform": platform,
            "labels": {CONTAINER_LABEL: self.run_id, **self.run.labels()},
        }
        wanted = list(dict.fromkeys(p for p in (container_port, *extra_ports) if p is not None))
        ports: dict[int, int] = {}
        if self.network_mode == "host":
            ports = {p: p for p in wanted}
            options["environment"] = dict(env)
            if container_port is not None and port_env is not None:
                ports[container_port] = free_loopback_port()
                options["environment"] |= port_env(ports[container_port])
            options["network_mode"] = "host"
        else:
            options["environment"] = dict(env)
            options["ports"] = {f"{p}/tcp": (LOOPBACK, None) for p in wanted}
        container: Any = None
        try:
            container = self._call(
                f"create a container from {image}", self.client.containers.create, image, **options
            )
            self._call(f"start {name}", container.start)
            if self.network_mode != "host":
                ports = {p: self._published_port(container, p) for p in wanted}
            port = ports.get(container_port, 0) if container_port is not None else 0
            log.debug(f"started {name} from {image} ({platform}) on {LOOPBACK}:{port}")
            yield RunningService(container=container, host=LOOPBACK, port=port, ports=ports)
        finally:
            # finally (not except Exception) so Ctrl-C also cleans up; by name, in case create failed half-way.
            self.remove_container(container if container is not None else name)

    def start_container(self, image: str, *, name: str, **options: Any) -> Any:
        """Create and start a container of ``image`` (``options`` as the SDK's ``containers.create`` takes them) that
        carries this run's labels, so ``remove_run_containers`` finds it after an interrupt (and the next run once
        this one has ended: engine/runs.py); SDK errors become
        EngineError. The caller removes it on every path (``remove_container``, by ``name`` when this raised part-way).
        Returns the SDK's container object."""
        labels = {**options.pop("labels", {}), CONTAINER_LABEL: self.run_id, **self.run.labels()}
        container = self._call(
            f"create a container from {image}",
            self.client.containers.create,
            image,
            name=name,
            labels=labels,
            **options,
        )
        self._call(f"start {name}", container.start)
        return container

    def start_detached(
        self,
        image: str,
        *,
        name: str,
        env: Mapping[str, str],
        container_port: int,
        host_port: int,
        volumes: Mapping[str, str],
        port_env: Callable[[int], Mapping[str, str]],
    ) -> str:
        """Start a long-lived container that restarts with the engine and answers on 127.0.0.1:``host_port``.

        With a bridge network the port is published on loopback only; without one the container shares the host's
        network and is told (through ``port_env``) to listen on that port itself. Returns the container id.
        """
        self.remove_container(name)
        options: dict[str, Any] = {
            "name": name,
            "detach": True,
            "restart_policy": {"Name": "unless-stopped"},
            "volumes": {host: {"bind": inside, "mode": "rw"} for host, inside in volumes.items()},
            "labels": {SERVICE_LABEL: name},
        }
        if self.network_mode == "host":
            options["environment"] = {**env, **port_env(host_port)}
            options["network_mode"] = "host"
        else:
            options["environment"] = dict(env)
            options["ports"] = {f"{container_port}/tcp": (LOOPBACK, host_port)}
        container = self._call(f"start {name} from {image}", self.client.containers.run, image, **options)
        return str(container.id)

    def remove_run_containers(self) -> int:
        """Remove every container this process started (an interrupted run's smoke services); returns how many."""
        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"{CONTAINER_LABEL}={self.run_id}"}
            )
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.warning(f"could not list this run's containers: {exc}")
            return 0
        for container in found:
            self.remove_container(container)
        return len(found)

    def container_logs(self, container: str) -> str:
        """A container's combined output so far; empty when it is gone (used to read logs and in error paths)."""
        try:
            raw: bytes = self.client.containers.get(container).logs()
        except (docker.errors.DockerException, requests.RequestException):
            return ""
        return raw.decode("utf-8", "replace")

    def container_running(self, container: str) -> bool:
        try:
            return bool(self.client.containers.get(container).status == "running")
        except (docker.errors.DockerException, requests.RequestException):
            return False

    def _published_port(self, container: Any, container_port: int) -> int:
        self._call(f"inspect {container.name}", container.reload)
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
            f"{container_port}/tcp"
        )
        if not bindings:
            raise EngineError(
                f"container {container.name} has no published port for {container_port}/tcp "
                f"(status {container.status})",
                fix="check that the image starts and the engine can publish ports on 127.0.0.1",
            )
        return int(bindings[0]["HostPort"])

    def remove_container(self, container: Any) -> None:
        """Remove a container (object, id or name) with its volumes; a missing one is not an error."""
        try:
            if isinstance(container, str):
                container = self.client.containers.get(container)
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.RequestException) as exc:
            log.warning(f"could not remove container {getattr(container, 'name', container)}: {exc}")

    # -- helpers -----------------------------------------------------------------------------------------------

    @classmethod
    def _call(cls, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the SDK and turn its errors into EngineError."""
        try:
            return func(*args, **kwargs)
        except _ENGINE_ERRORS as exc:
            raise cls._engine_error(what, exc) from exc

    @staticmethod
    def _engine_error(what: str, exc: BaseException) -> EngineError:
        """The engine's answer in its words, with the fix that answer calls for: an engine that answered is running,
        so only an engine that could not be reached is told to start one."""
        if isinstance(exc, docker.errors.ImageNotFound):
            return EngineError(
                f"could not {what}: no such image ({exc.explanation or exc})",
                fix="build, pull or load the image first (`docker image ls` lists what the engine has); another run "
                "sharing the engine may have removed it: run again",
            )
        if isinstance(exc, docker.errors.APIError) and exc.status_code == 409:
            return EngineError(
                f"the engine refused to {what}: {exc.explanation or exc}",
                fix="a container uses it (`docker ps -a` lists them; another run's smoke test ends by itself): "
                "wait for it or remove that container, then run again",
            )
        if isinstance(exc, docker.errors.APIError) and exc.response is not None:
            return EngineError(
                f"the engine refused to {what}: {exc.explanation or exc}",
                fix="check the image reference and platform against what the engine holds (`docker image ls`); "
                "if another run shares the engine, run again",
            )
        return EngineError(f"engine could not {what}: {exc}", fix=engine_fix())
