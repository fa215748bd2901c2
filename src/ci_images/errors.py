"""One error family with distinct exit codes.

Every message says what was wrong, where, and how to fix it; tasks.py and noxfile.py turn these into exit codes and
show a traceback only with ``--debug``.
"""

from __future__ import annotations

from collections.abc import Sequence


class CiImagesError(Exception):
    """Base of every error the tool reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


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


class SigningError(CiImagesError):
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
    """An entry the plan could not resolve (its message is the original error, fix included)."""

    exit_code = 3
