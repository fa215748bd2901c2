"""Running the two doors as a user does, in a subprocess: `python -m ci_images ...` and `python -m invoke ...`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

MAIN = Path(__file__).resolve().parents[1]
DOORS = {"module": ["-m", "ci_images"], "invoke": ["-m", "invoke"]}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what changes the tool's behaviour (GitHub Actions, CI_IMAGES_*, CI), with this
    checkout's sources importable, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CI_IMAGES_", "GITHUB_")) and k not in {"CI", "PYTHONPATH"}
    }
    env["PYTHONPATH"] = str(MAIN / "src")
    return env | extra


def run_door(
    kind: str, argv: Sequence[str], env: Mapping[str, str], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """One command through one door (``module`` or ``invoke``), from the checkout (where tasks.py is)."""
    return subprocess.run(
        [sys.executable, *DOORS[kind], *argv],
        cwd=MAIN,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
