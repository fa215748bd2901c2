"""Which run made what in a shared engine, and reaping what ended runs left there.

A run is one process of the tool. What it creates in the engine names it:

- its containers carry the labels of :class:`RunIdentity` (run id, host, pid, the process's identity, start time);
- its temporary images are tagged ``ci-images/IMAGE:TAG-PLATFORM.run-RUNID`` (:func:`run_tag`). An image's labels
  are part of what is published (the config a registry serves), so the run cannot be written into the image: its
  name says the run, and the run's marker says who that is;
- its marker, a volume ``ci-images-run-RUNID`` with the same labels, made before anything else and removed last.

A run has ended when its process is gone: on this host (same hostname, boot and PID namespace) that is read from
``/proc`` (a PID reused by another process has another start time). A run this host cannot judge (another machine
sharing the engine, another PID namespace) counts as ended once it is older than the bound. :func:`reap` removes
what ended runs left: their containers, then their temporary image references (never forced: an image a container
of a live run uses is left alone, and the engine deletes an image only with its last reference), the step images
of their builds killed half-way (told by the created label their marker names), then their markers.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path
from typing import Any

import requests

from ci_images.plan.recipe import CREATED_LABEL, RECIPE_LABEL

RUN_LABEL = "io.github.getsops.ci-images.run"  # value: the run id
HOST_LABEL = f"{RUN_LABEL}.host"
PID_LABEL = f"{RUN_LABEL}.pid"
PROCESS_LABEL = f"{RUN_LABEL}.process"  # BOOT_ID:PID_NAMESPACE:START_TICKS (empty where /proc cannot say)
STARTED_LABEL = f"{RUN_LABEL}.started"  # RFC 3339, UTC
# On a marker: the created label (plan/recipe.py) this run's builds carry. The classic builder makes one step image
# per build label, and those after the created label are this run's alone: a build killed half-way leaves them
# untagged, and this label is how they are told.
BUILDS_CREATED_LABEL = f"{RUN_LABEL}.builds-created"
# Smoke containers: their name, and a label whose value is the run's id (all that versions before the run labels
# wrote, so containers of those versions are told by these two and their age).
SMOKE_PREFIX = "ci-images-smoke-"
SMOKE_LABEL = "io.github.getsops.ci-images.smoke"
MARKER_PREFIX = "ci-images-run-"
RUN_TAG = re.compile(r"^ci-images/[^:@]+:.+\.run-(?P<run>[0-9a-f]{12})$")
DEFAULT_MAX_AGE_S = 24 * 3600.0  # a run this host cannot see is presumed ended after a day

_PROC = Path("/proc")


def run_tag(tag: str, run_id: str) -> str:
    """The tag of a temporary image: the stable one with the run's id after it (``2.0.0-linux-amd64.run-ID``)."""
    return f"{tag}.run-{run_id}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _stat_fields(pid: int | str, proc: Path = _PROC) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 (state) comes first."""
    text = _read(proc / str(pid) / "stat")
    return text.rpartition(")")[2].split() if text else []


def process_identity(pid: int | str = "self", proc: Path = _PROC) -> str:
    """BOOT_ID:PID_NAMESPACE:START_TICKS of a process, '' where /proc cannot say (not Linux, no /proc)."""
    fields = _stat_fields(pid, proc)
    boot = _read(proc / "sys" / "kernel" / "random" / "boot_id")
    try:
        namespace = str((proc / str(pid) / "ns" / "pid").readlink()).removeprefix("pid:[").removesuffix("]")
    except OSError:
        namespace = ""
    if len(fields) < 20 or not boot or not namespace:
        return ""
    return f"{boot}:{namespace}:{fields[19]}"  # field 22, the start time in clock ticks after boot


@dataclass(frozen=True)
class RunIdentity:
    """One run of the tool: what its labels say."""

    id: str
    host: str
    pid: int
    process: str
    started: str

    def labels(self) -> dict[str, str]:
        return {
            RUN_LABEL: self.id,
            HOST_LABEL: self.host,
            PID_LABEL: str(self.pid),
            PROCESS_LABEL: self.process,
            STARTED_LABEL: self.started,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> RunIdentity | None:
        if not labels.get(RUN_LABEL):
            return None
        try:
            pid = int(labels.get(PID_LABEL, ""))
        except ValueError:
            pid = 0
        return cls(
            labels[RUN_LABEL],
            labels.get(HOST_LABEL, ""),
            pid,
            labels.get(PROCESS_LABEL, ""),
            labels.get(STARTED_LABEL, ""),
        )

    @property
    def marker(self) -> str:
        return f"{MARKER_PREFIX}{self.id}"

    def age_s(self, now: float) -> float | None:
        try:
            return now - datetime.fromisoformat(self.started).timestamp()
        except ValueError:
            return None

    def describe(self) -> str:
        return f"run {self.id} (pid {self.pid} on {self.host or 'an unknown host'}, started {self.started or '?'})"


@cache
def this_run() -> RunIdentity:
    """The run this process is: made once, the same for every engine client it opens."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RunIdentity(secrets.token_hex(6), socket.gethostname(), os.getpid(), process_identity(), started)


def ended(
    run: RunIdentity, me: RunIdentity, *, max_age_s: float, now: float, proc: Path = _PROC
) -> str | None:
    """Why ``run`` has ended ("process gone", "older than ..."), or None while it may still be running."""
    if run.id == me.id:
        return None
    if run.host == me.host and run.pid > 0:
        gone = _process_gone(run, me, proc)
        if gone is not None:
            return "process gone" if gone else None
    age = run.age_s(now)
    if age is None or age > max_age_s:
        return f"older than {max_age_s / 3600:g} h" if age is not None else "no start time"
    return None


def _process_gone(run: RunIdentity, me: RunIdentity, proc: Path) -> bool | None:
    """Whether ``run``'s process is gone, read on this host; None when this host cannot tell (another boot or PID
    namespace, or no /proc)."""
    if not run.process or not me.process:
        if run.process or me.process:
            return None
        try:
            os.kill(run.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    boot, namespace, ticks = [*run.process.split(":"), "", "", ""][:3]
    my_boot, my_namespace, _ = [*me.process.split(":"), "", "", ""][:3]
    if (boot, namespace) != (my_boot, my_namespace):
        return None
    fields = _stat_fields(run.pid, proc)
    if len(fields) < 20:
        return True  # no such process
    return fields[0] in ("Z", "X") or fields[19] != ticks  # a zombie, or the PID is another process's now


# ---- reaping ------------------------------------------------------------------------------------------------------


@dataclass
class Reaped:
    """What one ended run left and what of it was removed (or left: an image a live run's container uses)."""

    run: RunIdentity | None  # None: smoke containers of a ci-images from before runs were labelled in full
    why: str
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    marker: bool = False

    @property
    def removed_anything(self) -> bool:
        return bool(self.containers or self.images or self.left or self.marker)

    def as_record(self) -> dict[str, Any]:
        run = self.run
        return {
            "run": run.id if run else None,
            "host": (run.host or None) if run else None,
            "pid": (run.pid or None) if run else None,
            "started": (run.started or None) if run else None,
            "why": self.why,
            "containers": sorted(self.containers),
            "images": sorted(self.images),
            "left_in_use": sorted(self.left),
        }

    def describe(self) -> str:
        parts = []
        if self.containers:
            parts.append(f"{len(self.containers)} container(s): {', '.join(sorted(self.containers))}")
        if self.images:
            parts.append(f"{len(self.images)} image(s): {', '.join(sorted(self.images))}")
        if self.left:
            parts.append(f"left {', '.join(sorted(self.left))} (a container of a running run uses it)")
        if self.run is None:
            who = "an older ci-images"
        elif self.run.pid:
            who = self.run.describe()
        else:
            who = f"run {self.run.id}"
        return f"{who}, {self.why}: removed {'; '.join(parts) or 'its marker'}"


Warn = Callable[[str], None]


def _engine_errors() -> tuple[type[Exception], ...]:
    """What an engine call raises when the engine fails. The docker SDK loads where a client is made, not with this
    module: a run with nothing for the engine (a mirror without smoke tests) never imports it."""
    import docker.errors

    return (docker.errors.DockerException, requests.RequestException)


class _Verdicts:
    """Whether each run has ended, judged once per reaping; the ended ones collect what was removed."""

    def __init__(self, me: RunIdentity, max_age_s: float, now: float, proc: Path) -> None:
        self.me = me
        self.max_age_s = max_age_s
        self.now = now
        self.proc = proc
        self.runs: dict[str, Reaped | None] = {}

    def __call__(self, run: RunIdentity) -> Reaped | None:
        if run.id not in self.runs:
            why = ended(run, self.me, max_age_s=self.max_age_s, now=self.now, proc=self.proc)
            self.runs[run.id] = Reaped(run, why) if why else None
        return self.runs[run.id]

    def without_marker(self, run_id: str) -> Reaped | None:
        """A run-tagged image whose run has no marker: that run has ended (its marker goes last)."""
        if run_id == self.me.id:
            return None
        if run_id not in self.runs:
            self.runs[run_id] = Reaped(RunIdentity(run_id, "", 0, "", ""), "ended (its marker is gone)")
        return self.runs[run_id]


def reap(
    client: Any,
    me: RunIdentity,
    *,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    warn: Warn = lambda text: None,
    proc: Path = _PROC,
) -> list[Reaped]:
    """Remove what ended runs left in the engine: containers, temporary images, markers. Never raises for one thing
    that could not be removed (``warn`` says it); raises the SDK's error when the engine cannot even list.

    Listed with the engine's list calls alone (the SDK's collections inspect each item after listing it, which fails
    when another run removes one in between, as runs sharing an engine do all the time)."""
    # The images before the markers: a run that starts after this listing has no image in it, so a reference
    # without a marker below is one whose run ended.
    refs = temporary_refs(client.api.images(filters={"reference": "ci-images/*"}))
    markers: dict[str, tuple[RunIdentity, str]] = {}
    builds_created: dict[str, str] = {}
    for volume in client.api.volumes(filters={"label": RUN_LABEL}).get("Volumes") or []:
        labels = volume.get("Labels") or {}
        run = RunIdentity.from_labels(labels)
        if run is not None:
            markers[run.id] = (run, str(volume["Name"]))
            if labels.get(BUILDS_CREATED_LABEL):
                builds_created[run.id] = labels[BUILDS_CREATED_LABEL]
    verdicts = _Verdicts(me, max_age_s, time.time(), proc)
    legacy = _reap_containers(client, verdicts, warn)
    for ref in refs:
        owner = ref.rpartition(".run-")[2]
        found = verdicts(markers[owner][0]) if owner in markers else verdicts.without_marker(owner)
        if found is not None:
            _release_into(found, client, ref, warn)
    for run, volume in markers.values():
        found = verdicts(run)
        if found is not None:
            if run.id in builds_created:
                _reap_build_steps(client, found, builds_created[run.id], warn)
            found.marker = _removed(partial(client.api.remove_volume, volume, force=True), volume, warn)
    done = [r for r in verdicts.runs.values() if r is not None and r.removed_anything]
    return done + ([legacy] if legacy.containers else [])


def _reap_containers(client: Any, verdicts: _Verdicts, warn: Warn) -> Reaped:
    """Containers of ended runs; and the smoke containers of older versions (a run id only) past the bound."""
    legacy = Reaped(None, f"older than {verdicts.max_age_s / 3600:g} h")
    listed = client.api.containers(all=True, filters={"label": SMOKE_LABEL})
    listed += client.api.containers(all=True, filters={"label": RUN_LABEL})
    for container in {c["Id"]: c for c in listed}.values():
        name = _name(container)
        run = RunIdentity.from_labels(container.get("Labels") or {})
        found = verdicts(run) if run is not None else None
        legacy_and_old = run is None and name.startswith(SMOKE_PREFIX)
        if legacy_and_old and float(container.get("Created") or 0) < verdicts.now - verdicts.max_age_s:
            found = legacy
        remove = partial(client.api.remove_container, container["Id"], force=True, v=True)
        if found is not None and _removed(remove, name, warn):
            found.containers.append(name)
    return legacy


def _name(container: Mapping[str, Any]) -> str:
    """A listed container's name (the engine lists them as "/name")."""
    names = container.get("Names") or [container["Id"][:12]]
    return str(names[0]).lstrip("/")


def _reap_build_steps(client: Any, found: Reaped, created: str, warn: Warn) -> None:
    """The step images a build of this ended run left untagged (killed half-way): those with its created label and
    no child, removed with their own parents. Another run started in the same second (or with the same
    SOURCE_DATE_EPOCH) shares them as its cache; a build of it that loses one is built again (Engine.build)."""
    filters = {"dangling": True, "label": [RECIPE_LABEL, f"{CREATED_LABEL}={created}"]}
    for image in client.api.images(filters=filters):
        outcome = release(client, image["Id"])
        if outcome == "removed":
            found.images.append(f"{image['Id'][:19]} (a step of a build killed half-way)")
        elif outcome not in ("gone", "in use"):
            warn(f"could not remove {image['Id']}: {outcome}")


def _release_into(found: Reaped, client: Any, ref: str, warn: Warn) -> None:
    outcome = release(client, ref)
    if outcome == "removed":
        found.images.append(ref)
    elif outcome == "in use":
        found.left.append(ref)
    elif outcome != "gone":
        warn(f"could not remove {ref}: {outcome}")


def temporary_refs(images: Iterable[Mapping[str, Any]]) -> list[str]:
    """The run-tagged references among ``images`` (as the engine lists them: RepoTags)."""
    return sorted({tag for image in images for tag in image.get("RepoTags") or () if RUN_TAG.fullmatch(tag)})


def release(client: Any, ref: str) -> str:
    """Remove the reference ``ref``, never forced: the image goes with its last reference, and stays while a
    container uses it, with its untagged parents that nothing else uses (the build's step images: the classic
    builder makes one per build label, and those after the created label are this run's alone). A build of another
    run that was taking one of those parents from its cache is built again (Engine.build). An image pulled by
    digest (a smoke test's) keeps a digest reference after its last tag: that goes too, once no tag is left.
    Returns "removed", "gone", "in use" or the engine's words for another refusal."""
    import docker.errors

    try:
        pulled_as = _digests_left_with(client, ref)
        client.api.remove_image(ref, force=False, noprune=False)
        for digest_ref in pulled_as:
            client.api.remove_image(digest_ref, force=False, noprune=False)
    except docker.errors.ImageNotFound:
        return "gone"
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            return "in use"
        return str(exc.explanation or exc)
    except _engine_errors() as exc:
        return str(exc)
    return "removed"


def _digests_left_with(client: Any, ref: str) -> list[str]:
    """The digest references that would hold the image after ``ref``, its last tag, is removed (none while
    another tag, another run's name, holds it)."""
    if "@" in ref:
        return []
    attrs = client.api.inspect_image(ref)
    tags = [t for t in attrs.get("RepoTags") or () if t != "<none>:<none>"]
    return list(attrs.get("RepoDigests") or ()) if tags == [ref] else []


def _removed(remove: Callable[[], object], what: str, warn: Warn) -> bool:
    import docker.errors

    try:
        remove()
    except docker.errors.NotFound:
        return False
    except _engine_errors() as exc:
        warn(f"could not remove {what}: {exc}")
        return False
    return True


# ---- this run's marker --------------------------------------------------------------------------------------------


def make_marker(client: Any, me: RunIdentity, builds_created: str | None = None) -> None:
    """The volume that says which process made the run-tagged images of this run, and the created label its builds
    carry (the engine keeps one volume per name: making it again is a no-op)."""
    labels = {**me.labels(), **({BUILDS_CREATED_LABEL: builds_created} if builds_created else {})}
    client.api.create_volume(name=me.marker, labels=labels)


def end_run(client: Any, me: RunIdentity, warn: Warn) -> None:
    """At the end of the process: this run's containers and temporary images that are still there, then its
    marker. An image a container of another run uses keeps its reference; without the marker, the next run that
    reaps removes that reference once the container is gone."""
    try:
        found = client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={me.id}"})
        listed = client.api.images(filters={"reference": "ci-images/*"})
    except _engine_errors() as exc:
        warn(f"could not list what this run left in the engine: {exc}")
        return
    for container in found:
        _removed(
            partial(client.api.remove_container, container["Id"], force=True, v=True), _name(container), warn
        )
    for ref in temporary_refs(listed):
        if ref.endswith(f".run-{me.id}"):
            outcome = release(client, ref)
            if outcome not in ("removed", "gone", "in use"):
                warn(f"could not remove {ref}: {outcome}")
    _removed(partial(client.api.remove_volume, me.marker, force=True), f"this run's marker {me.marker}", warn)
