"""Signals from the first instant: a SIGTERM or SIGINT while the door is still loading its libraries (before any log
line) ends it with 143 or 130 and one line, never by the signal itself (-15) or a traceback.

The door runs in a subprocess; the signal goes when its process has mapped a given extension module, read from
/proc/PID/maps: `_hashlib` while the door itself loads (the start-up handler's stretch), `_ssl` while the command's
module loads the registry client's libraries (the run's handler's stretch, before anything has started). Either
way the line says nothing was built or pushed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.doors import MAIN, clean_env

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")


def _mapped(pid: int, name: str) -> bool:
    try:
        return name in Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


@pytest.mark.parametrize("library", ["/_hashlib.", "/_ssl."], ids=["door", "command"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_door_loads_ends_with_its_exit_code(signum: signal.Signals, library: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ci_images", "list-images", "--catalog", str(MAIN / "images.yaml")],
        cwd=MAIN,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not _mapped(process.pid, library) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert process.poll() is None, "the door ended before it loaded its libraries"
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, (process.returncode, err)
    assert out == ""
    (line,) = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(
        f"error: interrupted by {signum.name}: stopped before anything was built or pushed"
    )
