"""Builds run side by side; a removal waits for them and holds new ones back (an engine's build cache is the images
a removal prunes)."""

from __future__ import annotations

import threading

from ci_images.engine.gate import BuildGate, builds, removes


class Recorder:
    """Stands in for the engine: each call records when it starts and ends, and waits for the test's go-ahead."""

    def __init__(self) -> None:
        self.gate = BuildGate()
        self.events: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def _run(self, name: str) -> None:
        with self.lock:
            self.events.append(f"start {name}")
        self.release[name].wait(10)
        with self.lock:
            self.events.append(f"end {name}")

    @builds
    def build(self, name: str) -> None:
        self._run(name)

    @removes
    def remove(self, name: str) -> None:
        self._run(name)


def started(recorder: Recorder, call: str, name: str) -> threading.Thread:
    recorder.release[name] = threading.Event()
    thread = threading.Thread(target=getattr(recorder, call), args=(name,), daemon=True)
    thread.start()
    return thread


def wait_for(recorder: Recorder, event: str) -> None:
    for _ in range(500):
        with recorder.lock:
            if event in recorder.events:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f"{event!r} never happened: {recorder.events}")


def test_a_removal_waits_for_running_builds_and_holds_new_ones_back() -> None:
    engine = Recorder()
    first, second = started(engine, "build", "b1"), started(engine, "build", "b2")
    wait_for(engine, "start b1")
    wait_for(engine, "start b2")  # two builds side by side
    removal = started(engine, "remove", "r")
    threading.Event().wait(0.2)
    assert "start r" not in engine.events  # waiting for the builds
    engine.release["b1"].set()
    engine.release["b2"].set()
    wait_for(engine, "start r")
    late = started(engine, "build", "b3")
    threading.Event().wait(0.2)
    assert "start b3" not in engine.events  # held back while the removal runs
    engine.release["r"].set()
    engine.release["b3"].set()
    for thread in (first, second, removal, late):
        thread.join(5)
    assert engine.events.index("end r") < engine.events.index("start b3")
    assert engine.build.__name__ == "build" and engine.remove.__doc__ is None
