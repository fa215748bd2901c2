"""Builds and image removals on one engine, kept apart within a process.

Removing an image also removes its untagged parents: the classic builder's intermediate images, which are its build
cache. A build running at that moment may be taking one of them from the cache; the engine then fails it half-way
("failed to get digest sha256:…: no such file or directory"). A push removes each entry's images once uploaded while
other entries (variants of one Dockerfile share most steps) still build, so here builds run side by side, and a
removal waits until none runs and holds new ones back until it is done.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class BuildGate:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._builds = 0

    @contextmanager
    def building(self) -> Iterator[None]:
        with self._changed:
            self._builds += 1
        try:
            yield
        finally:
            with self._changed:
                self._builds -= 1
                self._changed.notify_all()

    @contextmanager
    def removing(self) -> Iterator[None]:
        with self._changed:  # held throughout: no build starts until the removal is done
            self._changed.wait_for(lambda: self._builds == 0)
            yield


class Gated(Protocol):
    gate: BuildGate


G = TypeVar("G", bound=Gated)


def builds(method: Callable[Concatenate[G, P], R]) -> Callable[Concatenate[G, P], R]:
    """A method that builds: runs beside other builds, never beside a removal."""

    def gated(self: G, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.gate.building():
            return method(self, *args, **kwargs)

    functools.update_wrapper(gated, method)
    return gated


def removes(method: Callable[Concatenate[G, P], R]) -> Callable[Concatenate[G, P], R]:
    """A method that removes images: waits until no build runs."""

    def gated(self: G, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.gate.removing():
            return method(self, *args, **kwargs)

    functools.update_wrapper(gated, method)
    return gated


__all__ = ["BuildGate", "builds", "removes"]
