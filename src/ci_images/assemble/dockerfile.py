"""Read a Dockerfile with BuildKit's own parser and say whether it can be assembled without an engine.

Parsing is PyPI's ``dockerfile`` (a binding of moby/buildkit's ``frontend/dockerfile/parser``), so line continuations,
comments, JSON forms and the ``# escape=`` directive are read exactly as Docker reads them. Each instruction keeps
its lines, so every reason and every error names ``file:line``.

A Dockerfile is assemblable when it has one stage and every instruction after FROM is one of ASSEMBLABLE: metadata
the image config holds, or COPY/ADD of build-context files. What needs a running container (RUN), another stage
(multi-stage, ``COPY --from``), the network (``ADD`` of a URL or a git repository), extraction (``ADD`` of a local
archive), a user database (``--chown`` by name) or a heredoc goes through the engine, and :func:`classify` says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci_images.errors import BuildError

try:
    import dockerfile as buildkit_parser
except ImportError:  # no wheel for this machine (see pyproject.toml): every Dockerfile builds with the engine
    buildkit_parser = None

# Instructions the assembly carries out (Docker's reference order). MAINTAINER and ONBUILD are metadata too, but
# out of scope: the first is deprecated, the second changes what images built FROM this one do.
ASSEMBLABLE = frozenset(
    {
        "ARG",
        "ENV",
        "LABEL",
        "EXPOSE",
        "COPY",
        "ADD",
        "WORKDIR",
        "USER",
        "ENTRYPOINT",
        "CMD",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "VOLUME",
        "SHELL",
    }
)

# Why an instruction needs the engine, by keyword.
_ENGINE_ONLY = {
    "RUN": "runs a command in a container",
    "ONBUILD": "adds a build trigger (out of the assembly's scope)",
    "MAINTAINER": "is deprecated (out of the assembly's scope; use LABEL)",
}

# The flags each instruction takes (moby/buildkit frontend/dockerfile/instructions/parse.go); value: takes a value.
_FLAGS: dict[str, dict[str, bool]] = {
    "COPY": {"chown": True, "chmod": True, "link": False, "from": True, "parents": False, "exclude": True},
    "ADD": {
        "chown": True,
        "chmod": True,
        "link": False,
        "keep-git-dir": False,
        "checksum": True,
        "unpack": False,
        "exclude": True,
    },
    "HEALTHCHECK": {
        "interval": True,
        "timeout": True,
        "start-period": True,
        "start-interval": True,
        "retries": True,
    },
    "FROM": {"platform": True},
}
# Flags the assembly does not carry out, with the reason.
_ENGINE_FLAGS = {
    "from": "copies from another stage or image",
    "parents": "keeps source parents (--parents)",
    "exclude": "filters sources (--exclude)",
    "keep-git-dir": "clones a git repository",
    "checksum": "downloads a checked source",
    "unpack": "chooses extraction explicitly (--unpack)",
    "platform": "picks a platform in FROM (--platform)",
}

_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})


@dataclass(frozen=True)
class Instruction:
    """One instruction as BuildKit's parser reads it (values are not expanded yet)."""

    keyword: str  # upper case: "COPY"
    line: int  # first line, 1-based
    end_line: int
    flags: tuple[str, ...]  # as written: "--chown=1000:1000"
    args: tuple[str, ...]
    json: bool  # exec (JSON) form of CMD, ENTRYPOINT, SHELL, VOLUME, COPY, HEALTHCHECK CMD
    original: str
    heredocs: tuple[str, ...] = ()
    sub_keyword: str | None = None  # ONBUILD's instruction

    def flag_values(self) -> dict[str, str]:
        """``--name=value`` flags by name (a bare ``--name`` is "true"); checked by :func:`static_blocker`."""
        values: dict[str, str] = {}
        for flag in self.flags:
            name, has_value, value = flag.removeprefix("--").partition("=")
            values[name] = value if has_value else "true"
        return values


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: where it is (for messages), its escape token and its instructions."""

    path: str
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    syntax: str | None = None

    def where(self, instruction: Instruction) -> str:
        return f"{self.path}:{instruction.line}"


@dataclass(frozen=True)
class Blocker:
    """Why a Dockerfile needs the engine: the file, the line, the instruction and the reason."""

    path: str
    line: int | None
    instruction: str | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"{self.instruction} " if self.instruction else ""
        return f"{where}: {what}{self.reason}"


@dataclass(frozen=True)
class Verdict:
    """:func:`classify`'s answer: assemblable, or the first reason it is not."""

    blocker: Blocker | None = None

    @property
    def assemblable(self) -> bool:
        return self.blocker is None

    @property
    def reason(self) -> str | None:
        return None if self.blocker is None else str(self.blocker)


class NotAssemblable(Exception):
    """Raised where assembling finds out that the engine must build this Dockerfile (not an error: the entry
    builds with the engine instead)."""

    def __init__(self, blocker: Blocker) -> None:
        super().__init__(str(blocker))
        self.blocker = blocker


class DockerfileError(BuildError):
    """A Dockerfile the engine would refuse too: says file, line and what is wrong."""


def _directives(text: str) -> dict[str, str]:
    """Parser directives at the top (moby/buildkit frontend/dockerfile/parser/directives.go)."""
    found: dict[str, str] = {}
    for line in text.lstrip("\ufeff").splitlines():
        if not line.startswith("#"):
            break
        match = _DIRECTIVE.match(line[1:].lstrip())
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            break
        found.setdefault(match.group(1).lower(), match.group(2))
    return found


def parse_dockerfile(text: str, *, path: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text``; ``path`` names it in messages. A syntax error is a DockerfileError; without the
    parser on this machine, NotAssemblable."""
    if buildkit_parser is None:
        raise NotAssemblable(
            Blocker(
                path,
                None,
                None,
                "cannot be read here: BuildKit's parser (PyPI dockerfile) has no wheel for this machine",
            )
        )
    directives = _directives(text)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"{path}:1: invalid escape token {escape!r} does not match ` or \\")
    try:
        commands = buildkit_parser.parse_string(text)
    except buildkit_parser.GoParseError as exc:
        raise DockerfileError(f"{path}: {exc}", fix=f"fix the Dockerfile syntax in {path}") from exc
    instructions = tuple(
        Instruction(
            keyword=command.cmd.upper(),
            line=command.start_line,
            end_line=command.end_line,
            flags=tuple(command.flags),
            args=tuple(command.value),
            json=bool(command.json),
            original=command.original,
            heredocs=tuple(heredoc.name for heredoc in command.heredocs),
            sub_keyword=command.sub_cmd.upper() if command.sub_cmd else None,
        )
        for command in commands
    )
    return Dockerfile(path=path, instructions=instructions, escape=escape, syntax=directives.get("syntax"))


def read_dockerfile(path: Path, *, display: str | None = None) -> Dockerfile:
    """Parse the Dockerfile at ``path``; messages name it as ``display`` (default: the path as given)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DockerfileError(
            f"cannot read {path}: {exc.strerror}", fix="check the catalog's build path"
        ) from exc
    return parse_dockerfile(text, path=display or str(path))


def _flag_blocker(dockerfile: Dockerfile, instruction: Instruction) -> Blocker | None:
    known = _FLAGS.get(instruction.keyword, {})
    for flag in instruction.flags:
        if not flag.startswith("--"):
            raise DockerfileError(
                f"{dockerfile.where(instruction)}: {instruction.keyword} flag {flag!r} should start with --"
            )
        name, has_value, _ = flag[2:].partition("=")
        if name not in known:
            raise DockerfileError(
                f"{dockerfile.where(instruction)}: {instruction.keyword} has an unknown flag: --{name}"
            )
        if known[name] and not has_value:
            raise DockerfileError(
                f"{dockerfile.where(instruction)}: {instruction.keyword} is missing a value on flag: --{name}"
            )
        if name in _ENGINE_FLAGS:
            return Blocker(dockerfile.path, instruction.line, instruction.keyword, _ENGINE_FLAGS[name])
    return None


def static_blocker(dockerfile: Dockerfile) -> Blocker | None:
    """The first reason, visible without the build context or build args, why ``dockerfile`` needs the engine."""
    path = dockerfile.path
    if dockerfile.syntax is not None and not re.match(
        r"^(docker\.io/)?docker/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$", dockerfile.syntax
    ):
        return Blocker(path, 1, None, f"names another Dockerfile frontend (# syntax={dockerfile.syntax})")
    stages = [i for i in dockerfile.instructions if i.keyword == "FROM"]
    if not stages:
        raise DockerfileError(f"{path}: no FROM instruction", fix=f"start {path} with FROM (after any ARG)")
    if len(stages) > 1:
        return Blocker(
            path,
            stages[1].line,
            "FROM",
            f"starts a second stage (multi-stage build; the first FROM is at line {stages[0].line})",
        )
    seen_from = False
    for instruction in dockerfile.instructions:
        seen_from = seen_from or instruction.keyword == "FROM"
        blocker = _instruction_blocker(dockerfile, instruction, seen_from=seen_from)
        if blocker is not None:
            return blocker
    return None


def _instruction_blocker(
    dockerfile: Dockerfile, instruction: Instruction, *, seen_from: bool
) -> Blocker | None:
    """Why this one instruction needs the engine (None: the assembly carries it out); a wrong one is an error."""
    path, keyword = dockerfile.path, instruction.keyword
    if not seen_from and keyword != "ARG":
        raise DockerfileError(
            f"{dockerfile.where(instruction)}: {keyword} before FROM", fix="only ARG may come before FROM"
        )
    if keyword == "FROM" and (
        len(instruction.args) not in (1, 3)
        or (len(instruction.args) == 3 and instruction.args[1].upper() != "AS")
    ):
        raise DockerfileError(f"{dockerfile.where(instruction)}: FROM takes IMAGE [AS NAME]")
    if instruction.heredocs:
        return Blocker(path, instruction.line, keyword, "uses a heredoc")
    if keyword in _ENGINE_ONLY:
        return Blocker(path, instruction.line, keyword, _ENGINE_ONLY[keyword])
    if keyword not in ASSEMBLABLE and keyword != "FROM":
        return Blocker(path, instruction.line, keyword, "is not an instruction the assembly carries out")
    return _flag_blocker(dockerfile, instruction)


def classify(
    dockerfile: Dockerfile,
    context: Path,
    build_args: Mapping[str, str],
    *,
    base_config: Mapping[str, object] | None = None,
) -> Verdict:
    """Whether ``dockerfile`` can be assembled from ``context`` with ``build_args`` (no engine, no registry).

    Everything visible from the Dockerfile, the context and the build args is checked: the instructions and their
    flags, ADD sources (a URL, a git repository, a local archive), ``--chown`` names. Variables a base image's ENV
    defines are unknown until ``base_config`` (the base's image config JSON, when the caller has it) is given; then
    the base's ONBUILD triggers are checked too. An invalid Dockerfile raises DockerfileError.
    """
    from ci_images.assemble.config import evaluate  # config imports this module's types
    from ci_images.assemble.sources import archive_blocker

    blocker = static_blocker(dockerfile)
    if blocker is not None:
        return Verdict(blocker)
    try:
        recipe = evaluate(dockerfile, base_config or {}, build_args)
        for step in recipe.copies:
            if step.keyword == "ADD":
                archive_blocker(dockerfile, context, step)
    except NotAssemblable as exc:
        return Verdict(exc.blocker)
    return Verdict()


def classify_path(
    path: Path, context: Path, build_args: Mapping[str, str], *, display: str | None = None
) -> Verdict:
    """:func:`classify` of the Dockerfile at ``path`` (named ``display`` in reasons), read and parsed here."""
    try:
        dockerfile = read_dockerfile(path, display=display)
    except NotAssemblable as exc:
        return Verdict(exc.blocker)
    return classify(dockerfile, context, build_args)
