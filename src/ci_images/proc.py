"""The one place that runs subprocesses: argv lists only, errors carry argv, exit code and stderr."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ci_images.errors import CommandError


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input_text: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and capture text output; raise CommandError on a non-zero exit when ``check``."""
    args = [str(a) for a in argv]
    try:
        result = subprocess.run(
            args,
            check=False,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input_text,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise CommandError(args, 127, str(exc), fix=f"install {args[0]!r} or put it on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(args, -1, f"timed out after {timeout} s") from exc
    if check and result.returncode != 0:
        raise CommandError(args, result.returncode, result.stderr or result.stdout)
    return result


def spawn(
    argv: Sequence[str | Path], *, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running background process whose output goes to ``log_path``."""
    args = [str(a) for a in argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        try:
            return subprocess.Popen(
                args,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise CommandError(args, 127, str(exc), fix=f"install {args[0]!r} or put it on PATH") from exc
