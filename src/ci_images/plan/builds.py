"""How an entry's image is made, and why: assembled as registry documents (no engine), built by the engine, or copied
from upstream (a mirror). Pure: it reads the Dockerfile and the build context, nothing else.

A Dockerfile whose instructions are all metadata or copies of build-context files is assembled
(``ci_images.assemble``); any other (a RUN step, several stages, ADD of a URL or an archive, a ``--chown`` by name,
a machine without BuildKit's parser) goes through the engine, and the reason names the file and line. What only
the base image can tell (its ONBUILD triggers) is checked again when the entry is assembled; the run then falls
back to the engine and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ci_images.plan.entries import Entry

ASSEMBLED, ENGINE, MIRROR = "assembled", "engine", "mirror"
WAYS = (ASSEMBLED, ENGINE, MIRROR)
ASSEMBLED_REASON = "every instruction is metadata or a copy of build-context files"
MIRROR_REASON = "copied from upstream registry to registry, byte for byte"


@dataclass(frozen=True)
class HowBuilt:
    """``way``: assembled, engine or mirror; ``reason``: why (an engine build names the Dockerfile's line)."""

    way: str
    reason: str

    @property
    def assembled(self) -> bool:
        return self.way == ASSEMBLED


def how_built(entry: Entry) -> HowBuilt:
    """How ``entry`` is made. The Dockerfile is classified with the entry's build args and its upstream repository as
    BASE_IMAGE (what a FROM line expands to does not change the verdict: the base is pinned by digest at build time)."""
    if entry.mode != "build" or entry.context is None or entry.dockerfile is None:
        return HowBuilt(MIRROR, MIRROR_REASON)
    # The repository without the version: one verdict serves every version of an image.
    args = tuple(sorted({**entry.build_args, "BASE_IMAGE": str(entry.source)}.items()))
    return _classified(entry.dockerfile, entry.context, args, _display(entry.dockerfile, entry.context))


def _display(dockerfile: Path, context: Path) -> str:
    """The Dockerfile as reasons name it: the build folder's name and the file (``vault/Dockerfile``)."""
    return f"{context.name}/{dockerfile.relative_to(context).as_posix()}"


@lru_cache(maxsize=256)
def _classified(dockerfile: Path, context: Path, args: tuple[tuple[str, str], ...], display: str) -> HowBuilt:
    """One verdict per Dockerfile, context and build args in a process: the variants of every version share it."""
    from ci_images.assemble.dockerfile import (  # a catalog of mirrors reads none
        DockerfileError,
        classify_path,
    )

    build_args: Mapping[str, str] = dict(args)
    try:
        verdict = classify_path(dockerfile, context, build_args, display=display)
    except DockerfileError as exc:  # the engine gets to say it too, in the build's own words
        return HowBuilt(ENGINE, f"the assembly refuses it: {exc.message}")
    if verdict.assemblable:
        return HowBuilt(ASSEMBLED, ASSEMBLED_REASON)
    return HowBuilt(ENGINE, verdict.reason or "needs the engine")
