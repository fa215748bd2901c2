"""One error family with distinct exit codes.

Every message says what was wrong, where, and how to fix it. The exit code travels with the error: its class sets it
(``exit_code``), and an error that stands for other errors (EntriesFailed, PlanError) carries theirs. Both doors
(``ci_images.cli``) print the message, redacted, and exit with that code; a traceback only with ``--debug``.
"""

from __future__ import annotations

from collections.abc import Sequence


class CiImagesError(Exception):
    """Base of every error the tool reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None, exit_code: int | None = None) -> None:
        self.message = message
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.render())

    def render(self) -> str:
        """One line (what, where, and the fix) unless the message itself spans lines, like a build log's tail."""
        if not self.fix:
            return self.message
        if "\n" in self.message:
            return f"{self.message}\n  fix: {self.fix}"
        return f"{self.message}; fix: {self.fix}"


class UsageError(CiImagesError):
    """Bad arguments or environment settings."""

    exit_code = 2


class CatalogError(CiImagesError):
    """Bad catalog: carries file, line and column (1-based) of the offending node."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int | None = None,
        column: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}", fix=fix)


class RegistryError(CiImagesError):
    """A registry answered with an error or could not be reached."""

    exit_code = 3


class UpstreamUnreachableError(RegistryError):
    """The upstream registry (Docker Hub or its mirror) could not be reached."""

    exit_code = 3


class RateLimitError(RegistryError):
    """The upstream pull quota is (nearly) exhausted: stop before failing half-way."""

    exit_code = 4


class EngineError(CiImagesError):
    """No Docker engine answers, or it refused a request."""

    exit_code = 5


class BuildError(CiImagesError):
    """An image build failed."""

    exit_code = 6


class SmokeError(CiImagesError):
    """A smoke test failed; the message carries the container's logs."""

    exit_code = 7


class PublishError(CiImagesError):
    """One or more entries failed to build, test or push."""

    exit_code = 8


class EntriesFailed(PublishError):
    """Entries of a run failed. When every entry failed with one exit code, that code is the run's (a registry that
    kept answering 429 ends as 4, not as 8); otherwise 8: some entries failed, the others went through."""


class TagsPartlyMoved(PublishError):
    """Moving an entry's tags stopped part-way: it names the tags that moved and those that did not. Every tag
    still points at a complete index; the next run sees the split and moves the rest (a retag)."""

    def __init__(
        self,
        message: str,
        *,
        moved: Sequence[str],
        not_moved: Sequence[str],
        exit_code: int | None = None,
    ) -> None:
        self.moved = tuple(moved)
        self.not_moved = tuple(not_moved)
        super().__init__(
            f"{message}; moved: {', '.join(self.moved) or 'none'}; not moved: {', '.join(self.not_moved)}",
            fix="run again: the next run moves the tags that did not move",
            exit_code=exit_code,
        )


class TagsRaced(PublishError):
    """Another writer moved tags this run had just moved (read back after moving them): every tag holds a complete
    index, but an entry's tags may now disagree; the lock file records what the registry holds."""

    exit_code = 12


class Cancelled(CiImagesError):
    """The run was interrupted (SIGINT or SIGTERM) and this entry stopped before its tags moved."""

    exit_code = 130


class SigningError(CiImagesError):
    """Signing or verifying a signature failed."""

    exit_code = 9


class LabError(CiImagesError):
    """The hermetic image lab could not be set up."""

    exit_code = 10


class CommandError(CiImagesError):
    """A subprocess failed: carries argv, exit code and stderr."""

    exit_code = 11

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, fix: str | None = None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        super().__init__(
            f"command {self.argv!r} exited {returncode}" + (f":\n{tail}" if tail else ""), fix=fix
        )


class PlanError(CiImagesError):
    """An entry the plan could not resolve; it carries the original error's text and exit code."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run stops, cleans up, and exits 128 + the signal number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.summary = ""  # what the run did before it stopped, set by the pipeline

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
