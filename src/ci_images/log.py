"""One logger for the whole tool.

Three faces: GitHub Actions (``::group::``, ``::error::``, step summary, outputs), a terminal (rich), plain CI lines.
Every text passes through :func:`redact` first, so a registered secret never reaches any output.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

_secrets: set[str] = set()
_lock = threading.Lock()


def add_secret(value: str | None) -> None:
    """Register a value that must never be printed (passwords, tokens)."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def in_github_actions(env: Mapping[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    # GitHub workflow-command escaping, so multi-line errors stay one annotation.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


class Logger:
    """Prints progress and problems in the form the current place (GitHub Actions, terminal, plain CI) expects."""

    def __init__(self, stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> None:
        self._stream = stream
        self._env = env
        self.debug_enabled = False
        # Entries run in parallel threads; in GitHub Actions each thread's lines are held back and printed as one
        # ::group:: when its entry ends, because the runner cannot show interleaved groups.
        self._buffers = threading.local()
        self._progress: Any = None

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def env(self) -> Mapping[str, str]:
        return self._env if self._env is not None else os.environ

    @property
    def github(self) -> bool:
        return in_github_actions(self.env)

    @property
    def interactive(self) -> bool:
        return not self.github and self.stream.isatty() and not self.env.get("CI")

    def _write(self, text: str) -> None:
        line = redact(text)
        buffer: list[str] | None = getattr(self._buffers, "lines", None)
        if buffer is not None:
            buffer.append(line)
            return
        if self._progress is not None:
            # Print above the live progress bar instead of tearing through it.
            self._progress.console.print(line, markup=False, highlight=False)
            return
        with _lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def info(self, text: str) -> None:
        self._write(text)

    def debug(self, text: str) -> None:
        if self.debug_enabled:
            self._write(f"debug: {text}")

    def warning(self, text: str) -> None:
        if self.github:
            self._write(f"::warning::{_escape_data(redact(text))}")
        else:
            self._write(f"warning: {text}")

    def error(self, text: str, *, title: str | None = None) -> None:
        if self.github:
            props = f" title={_escape_data(redact(title))}" if title else ""
            self._write(f"::error{props}::{_escape_data(redact(text))}")
        else:
            self._write(f"error: {text}")

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A titled section: a collapsible ``::group::`` in GitHub Actions, a heading line elsewhere."""
        if not self.github or getattr(self._buffers, "lines", None) is not None:
            self._write(f"== {title}")
            yield
            return
        self._buffers.lines = [f"::group::{redact(title)}"]
        try:
            yield
        finally:
            lines: list[str] = self._buffers.lines
            self._buffers.lines = None
            with _lock:
                self.stream.write("\n".join([*lines, "::endgroup::"]) + "\n")
                self.stream.flush()

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[], None]]:
        """Yield ``advance()``; in a terminal a rich progress bar counts the finished entries, elsewhere nothing."""
        if not self.interactive or total <= 1:
            yield lambda: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=self.stream),
        )
        task = bar.add_task(description, total=total)
        with bar:
            self._progress = bar
            try:
                yield lambda: bar.advance(task)
            finally:
                self._progress = None

    def add_mask(self, value: str | None) -> None:
        """Register a secret: every line this logger writes is redacted.

        No ``::add-mask::`` is printed: that would put the value itself into the output stream, and the runner
        already masks the secrets a workflow passes in.
        """
        add_secret(value)

    def step_summary(self, markdown: str) -> None:
        """Append Markdown to GITHUB_STEP_SUMMARY (never overwrite)."""
        path = self.env.get("GITHUB_STEP_SUMMARY")
        if path and self.github:
            with Path(path).open("a", encoding="utf-8") as fh:
                fh.write(redact(markdown).rstrip("\n") + "\n")

    def set_output(self, name: str, value: str) -> None:
        """Append an output to GITHUB_OUTPUT, using the heredoc form so any value is safe."""
        path = self.env.get("GITHUB_OUTPUT")
        if not path or not self.github:
            return
        delimiter = f"ci_images_{os.urandom(8).hex()}"
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(f"{name}<<{delimiter}\n{redact(value)}\n{delimiter}\n")


log = Logger()
