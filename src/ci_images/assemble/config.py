"""Carry out a Dockerfile's metadata instructions on the base's image config, as Docker's classic builder does.

The semantics are moby/moby's classic builder (``builder/dockerfile/dispatchers.go``, ``evaluator.go``,
``buildargs.go``, ``internals.go``; v20.10, the engine this project drives), instruction by instruction:

- expansion happens before an instruction runs, with the config's Env plus the build args declared so far (an ENV
  of the same name wins); ENV, LABEL, COPY/ADD, WORKDIR, USER, VOLUME, STOPSIGNAL, ARG and EXPOSE expand,
  CMD, ENTRYPOINT, HEALTHCHECK and SHELL do not; FROM expands with the args declared before it;
- ``ENV`` replaces a variable by name or appends it; the base gets ``PATH`` when it has none (setDefaultPath);
- ``CMD``/``ENTRYPOINT`` in shell form run through ``SHELL`` (default ``/bin/sh -c``); an ENTRYPOINT clears the
  inherited Cmd unless this Dockerfile sets CMD;
- ``WORKDIR`` is relative to the previous one; ``EXPOSE``, ``VOLUME`` and ``LABEL`` add to what the base has;
- ``HEALTHCHECK`` durations are nanoseconds; the shell form is ``CMD-SHELL``, ``NONE`` disables the base's check.

History lines follow BuildKit's wording (``frontend/dockerfile/dockerfile2llb/convert.go``: ``ENV K=V``,
``COPY src dest``, ``CMD ["a" "b"]``...): the classic builder's ``/bin/sh -c #(nop)`` lines embed its context hashes,
which nothing else can recompute. WORKDIR is a metadata step here (``empty_layer``): the classic builder commits
the directory in a layer of its own, but writing one without seeing the base's filesystem could overwrite an existing
directory's owner and mode; the engine creates a missing working directory when a container starts.
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ci_images.assemble.dockerfile import (
    Blocker,
    Dockerfile,
    DockerfileError,
    Instruction,
    NotAssemblable,
    static_blocker,
)
from ci_images.assemble.gotypes import (
    exposed_ports,
    format_go_duration,
    go_list,
    parse_go_duration,
    valid_signal,
)
from ci_images.assemble.shell import ExpansionError, process_word, process_words

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
# Build args usable without an ARG line when the caller passes them (buildargs.go builtinAllowedBuildArgs).
BUILTIN_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
    }
)
# The image config fields an OCI/Docker image config keeps (BuildKit's dockerspec.DockerOCIImageConfig); the
# Docker-only runtime fields a classic build leaves in ("Hostname", "Image", "AttachStdin"...) are dropped.
CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)
HISTORY_COMMENT = "ci-images assemble"
_NUMERIC_OWNER = re.compile(r"^([0-9]+)(?::([0-9]+))?$")
_OCTAL_MODE = re.compile(r"^[0-7]{1,4}$")


@dataclass(frozen=True)
class CopyStep:
    """One COPY or ADD, expanded: what layers.py turns into one layer."""

    keyword: str  # "COPY" or "ADD"
    line: int
    sources: tuple[str, ...]  # relative to the build context, as written after expansion
    dest: str  # absolute; a trailing "/" is kept (it means "into this directory")
    chown: tuple[int, int] | None
    chmod: int | None
    known_dirs: tuple[
        str, ...
    ]  # directories certain to exist before this step: "/" and every working directory
    created_by: str


@dataclass(frozen=True)
class HistoryStep:
    created_by: str
    empty_layer: bool


@dataclass(frozen=True)
class Recipe:
    """A Dockerfile carried out on a base config: the new ``config`` object, the history lines (one per instruction
    after FROM; the non-empty ones belong to ``copies``, in order) and the expanded FROM."""

    base_name: str
    config: Mapping[str, Any]
    history: tuple[HistoryStep, ...]
    copies: tuple[CopyStep, ...]


@dataclass
class _Args:
    """moby's BuildArgs: values given by the caller, ARGs declared before FROM (meta) and in the stage (allowed)."""

    given: Mapping[str, str]
    meta: dict[str, str | None] = field(default_factory=dict)
    allowed: dict[str, str | None] = field(default_factory=dict)

    def value(self, key: str, mapping: Mapping[str, str | None]) -> str | None:
        """getBuildArg: the caller's value, else the ARG's default, else (no default) the meta ARG's."""
        if key in self.given:
            return self.given[key]
        default = mapping.get(key)
        if default is None:
            return self.meta.get(key)
        return default

    def _all(self, mapping: Mapping[str, str | None]) -> dict[str, str]:
        values: dict[str, str] = {}
        for key in [*mapping, *sorted(BUILTIN_ARGS)]:
            value = self.value(key, mapping)
            if value is not None:
                values[key] = value
        return values

    def all_allowed(self) -> dict[str, str]:
        return self._all(self.allowed)

    def all_meta(self) -> dict[str, str]:
        return self._all(self.meta)


def _env_map(env: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        values[key] = value
    return values


def clean_path(path: str) -> str:
    """Go's path.Clean (for the absolute paths of an image): "/a//b/../c/" -> "/a/c"."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def rfc3339(epoch: int) -> str:
    """``epoch`` as Go's time.Time marshals a UTC time of whole seconds: 2024-05-01T12:00:00Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Stage:
    """The dispatch state of the one stage: the config being built, its history and copies."""

    def __init__(self, dockerfile: Dockerfile, base: Mapping[str, Any], args: _Args) -> None:
        self.dockerfile = dockerfile
        self.args = args
        inherited = base.get("config") or {}
        self.config: dict[str, Any] = {
            k: copy.deepcopy(inherited[k]) for k in CONFIG_FIELDS if inherited.get(k) is not None
        }
        env = list(self.config.get("Env") or [])
        if "PATH" not in _env_map(env):
            env.append(f"PATH={DEFAULT_PATH}")
        self.config["Env"] = env
        self.cmd_set = False
        self.history: list[HistoryStep] = []
        self.copies: list[CopyStep] = []
        self.known_dirs: list[str] = ["/"]
        self.know_dir(self.config.get("WorkingDir") or "/")

    # -- helpers ---------------------------------------------------------------------------------------------------

    def know_dir(self, path: str) -> None:
        """``path`` exists from here on (the base's working directory, a WORKDIR: the builder creates both)."""
        if clean_path(path) not in self.known_dirs:
            self.known_dirs.append(clean_path(path))

    def fail(self, instruction: Instruction, message: str, fix: str | None = None) -> DockerfileError:
        return DockerfileError(
            f"{self.dockerfile.where(instruction)}: {instruction.keyword}: {message}", fix=fix
        )

    def env(self) -> dict[str, str]:
        env = _env_map(self.config.get("Env") or [])
        return {**{k: v for k, v in self.args.all_allowed().items() if k not in env}, **env}

    def expander(self, instruction: Instruction) -> Callable[[str], str]:
        env = self.env()

        def expand(word: str) -> str:
            try:
                return process_word(word, env, escape=self.dockerfile.escape)
            except ExpansionError as exc:
                raise self.fail(instruction, str(exc)) from None

        return expand

    def commit(self, created_by: str) -> None:
        self.history.append(HistoryStep(created_by, empty_layer=True))

    @staticmethod
    def pairs(instruction: Instruction) -> list[tuple[str, str]]:
        args = instruction.args
        if not args or len(args) % 2:
            raise DockerfileError(f"{instruction.keyword} needs KEY=VALUE pairs (line {instruction.line})")
        return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]

    def cmdline(self, instruction: Instruction, args: Sequence[str]) -> list[str]:
        """handleJSONArgs + resolveCmdLine: the exec form as is, the shell form through SHELL."""
        if instruction.json:
            return list(args)
        line = [" ".join(args)] if args else []
        return [*(self.config.get("Shell") or DEFAULT_SHELL), *line]

    # -- instructions ----------------------------------------------------------------------------------------------

    def dispatch(self, instruction: Instruction) -> None:
        handler = getattr(self, f"do_{instruction.keyword.lower()}")
        handler(instruction)

    def do_arg(self, instruction: Instruction) -> None:
        expand = self.expander(instruction)
        shown: list[str] = []
        for arg in instruction.args:
            key, has_default, default = arg.partition("=")
            if not key:
                raise self.fail(instruction, "ARG names can not be blank")
            key = expand(key)
            value = expand(default) if has_default else None
            self.args.allowed[key] = value
            effective = self.args.value(key, self.args.allowed)
            shown.append(key if effective is None else f"{key}={effective}")
        self.commit("ARG " + " ".join(shown))

    def do_env(self, instruction: Instruction) -> None:
        expand = self.expander(instruction)
        pairs = [(expand(k), expand(v)) for k, v in self.pairs(instruction)]
        env: list[str] = self.config["Env"]
        for key, value in pairs:
            if not key:
                raise self.fail(instruction, "ENV names can not be blank")
            index = next((i for i, item in enumerate(env) if item.partition("=")[0] == key), None)
            if index is None:
                env.append(f"{key}={value}")
            else:
                env[index] = f"{key}={value}"
        self.commit("ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def do_label(self, instruction: Instruction) -> None:
        expand = self.expander(instruction)
        pairs = [(expand(k), expand(v)) for k, v in self.pairs(instruction)]
        labels = self.config.setdefault("Labels", {})
        for key, value in pairs:
            if not key:
                raise self.fail(instruction, "LABEL names can not be blank")
            labels[key] = value
        self.commit("LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def do_expose(self, instruction: Instruction) -> None:
        env = self.env()
        ports: list[str] = []
        try:
            for raw in sorted(instruction.args):  # parseExpose sorts the words before expanding them
                for word in process_words(raw, env, escape=self.dockerfile.escape):
                    ports.extend(exposed_ports(word))
        except (ExpansionError, ValueError) as exc:
            raise self.fail(instruction, str(exc)) from None
        exposed = self.config.setdefault("ExposedPorts", {})
        for port in ports:
            exposed[port] = {}
        self.commit("EXPOSE " + go_list(ports))

    def do_workdir(self, instruction: Instruction) -> None:
        requested = self.expander(instruction)(instruction.args[0])
        if not requested:
            raise self.fail(instruction, "cannot normalize nothing")
        current = self.config.get("WorkingDir") or ""
        # normalizeWorkdir: a relative path joins the previous one; an absolute one is kept as written.
        workdir = (
            requested if requested.startswith("/") else clean_path(posixpath.join("/", current, requested))
        )
        self.config["WorkingDir"] = workdir
        self.know_dir(workdir)
        self.commit(f"WORKDIR {workdir}")

    def do_user(self, instruction: Instruction) -> None:
        self.config["User"] = self.expander(instruction)(instruction.args[0])
        self.commit(f"USER {self.config['User']}")

    def do_volume(self, instruction: Instruction) -> None:
        expand = self.expander(instruction)
        volumes = [expand(v.strip()) for v in instruction.args]
        if not instruction.args or any(not v for v in volumes):
            raise self.fail(instruction, "VOLUME specified can not be an empty string")
        held = self.config.setdefault("Volumes", {})
        for volume in volumes:
            held[volume] = {}
        self.commit("VOLUME " + go_list(volumes))

    def do_stopsignal(self, instruction: Instruction) -> None:
        signal = self.expander(instruction)(instruction.args[0])
        if not valid_signal(signal):
            raise self.fail(
                instruction, f"Invalid signal: {signal}", fix="use a signal name like SIGTERM or a number"
            )
        self.config["StopSignal"] = signal
        self.commit(f"STOPSIGNAL {signal}")

    def do_shell(self, instruction: Instruction) -> None:
        if not instruction.json or not instruction.args:
            raise self.fail(
                instruction,
                "SHELL requires the arguments to be in JSON form",
                fix='write SHELL ["/bin/sh", "-c"]',
            )
        self.config["Shell"] = list(instruction.args)
        self.commit("SHELL " + go_list(list(instruction.args)))

    def do_cmd(self, instruction: Instruction) -> None:
        cmd = self.cmdline(instruction, instruction.args)
        self.config["Cmd"] = cmd
        if instruction.args:
            self.cmd_set = True
        self.commit("CMD " + go_list(cmd, quoted=True))

    def do_entrypoint(self, instruction: Instruction) -> None:
        entrypoint = self.cmdline(instruction, instruction.args) if instruction.args else None
        self.config["Entrypoint"] = entrypoint
        if not self.cmd_set:
            self.config["Cmd"] = None
        self.commit("ENTRYPOINT " + go_list(entrypoint or [], quoted=True))

    def do_healthcheck(self, instruction: Instruction) -> None:
        if not instruction.args:
            raise self.fail(instruction, "HEALTHCHECK requires at least one argument")
        kind, rest = instruction.args[0].upper(), instruction.args[1:]
        if kind == "NONE":
            if rest:
                raise self.fail(instruction, "HEALTHCHECK NONE takes no arguments")
            self.config["Healthcheck"] = {"Test": ["NONE"]}
            self.commit(
                "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
            )
            return
        if kind != "CMD":
            raise self.fail(instruction, f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
        command = list(rest) if instruction.json else ([" ".join(rest)] if rest else [])
        if not command:
            raise self.fail(instruction, "Missing command after HEALTHCHECK CMD")
        flags = instruction.flag_values()
        timings: dict[str, int] = {}
        for flag, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ):
            timings[key] = self._interval(instruction, flag, flags.get(flag, ""))
        retries = flags.get("retries", "")
        if retries and (not re.fullmatch(r"[+-]?[0-9]+", retries) or int(retries) < 0):
            raise self.fail(instruction, f"--retries must be a whole number of zero or more, not {retries!r}")
        health: dict[str, Any] = {"Test": ["CMD" if instruction.json else "CMD-SHELL", *command]}
        health.update({key: ns for key, ns in timings.items() if ns})
        if retries and int(retries):
            health["Retries"] = int(retries)
        self.config["Healthcheck"] = health
        shown = " ".join(f"{key}:{format_go_duration(ns)}" for key, ns in timings.items())
        self.commit(f"HEALTHCHECK {{Test:{go_list(health['Test'])} {shown} Retries:{int(retries or 0)}}}")

    def _interval(self, instruction: Instruction, flag: str, value: str) -> int:
        if not value:
            return 0
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise self.fail(instruction, f"--{flag}: {exc}") from None
        if ns and ns < 1_000_000:
            raise self.fail(instruction, f'Interval "{flag}" cannot be less than 1ms')
        return ns

    def do_copy(self, instruction: Instruction) -> None:
        expand = self.expander(instruction)
        where = self.dockerfile.where(instruction)
        if len(instruction.args) < 2:
            raise self.fail(
                instruction,
                f"{instruction.keyword} requires at least two arguments, but only one was provided. Destination could not be determined",
            )
        flags = instruction.flag_values()
        chown_text = expand(flags.get("chown", ""))
        chmod_text = expand(flags.get("chmod", ""))
        sources = tuple(expand(s) for s in instruction.args[:-1])
        dest_text = expand(instruction.args[-1])
        for source in sources:
            if source.startswith(("http://", "https://")):
                if instruction.keyword == "COPY":
                    raise self.fail(
                        instruction,
                        "source can't be a URL for COPY",
                        fix="use ADD, or download the file into the context",
                    )
                raise NotAssemblable(
                    Blocker(self.dockerfile.path, instruction.line, "ADD", f"downloads a URL ({source})")
                )
            if source.startswith(("git@", "git://", "ssh://")):
                raise NotAssemblable(
                    Blocker(
                        self.dockerfile.path,
                        instruction.line,
                        instruction.keyword,
                        f"clones a git repository ({source})",
                    )
                )
        chown: tuple[int, int] | None = None
        if chown_text:
            owner = _NUMERIC_OWNER.match(chown_text)
            if owner is None:
                raise NotAssemblable(
                    Blocker(
                        self.dockerfile.path,
                        instruction.line,
                        instruction.keyword,
                        f"--chown={chown_text} names a user or group (resolving it needs the base's /etc/passwd; numeric UID:GID is assembled)",
                    )
                )
            chown = (int(owner.group(1)), int(owner.group(2) or owner.group(1)))
        chmod: int | None = None
        if chmod_text:
            if not _OCTAL_MODE.match(chmod_text):
                raise NotAssemblable(
                    Blocker(
                        self.dockerfile.path,
                        instruction.line,
                        instruction.keyword,
                        f"--chmod={chmod_text} is not an octal mode",
                    )
                )
            chmod = int(chmod_text, 8)
        if not dest_text:
            raise DockerfileError(f"{where}: {instruction.keyword} has an empty destination")
        dest = dest_text
        if not dest.startswith("/"):  # normalizeDest: relative to WORKDIR, keeping a trailing slash
            dest = clean_path(posixpath.join("/", self.config.get("WorkingDir") or "", dest_text))
            if dest_text.endswith("/") and dest != "/":
                dest += "/"
        shown = [instruction.keyword]
        if chown_text:
            shown.append(f"--chown={chown_text}")
        if chmod_text:
            shown.append(f"--chmod={chmod_text}")
        created_by = " ".join([*shown, *sources, dest_text])
        self.copies.append(
            CopyStep(
                instruction.keyword,
                instruction.line,
                sources,
                dest,
                chown,
                chmod,
                tuple(self.known_dirs),
                created_by,
            )
        )
        self.history.append(HistoryStep(created_by, empty_layer=False))

    do_add = do_copy


def evaluate(
    dockerfile: Dockerfile,
    base_config: Mapping[str, Any],
    build_args: Mapping[str, str],
    *,
    labels: Mapping[str, str] | None = None,
) -> Recipe:
    """Carry out ``dockerfile`` on ``base_config`` (the base image's config JSON, parsed) with ``build_args``;
    ``labels`` (the tool's own) are set last and win, as the classic builder's ``--label`` options do.

    Raises NotAssemblable (with file:line) where the engine must build, DockerfileError where it would fail too.
    """
    blocker = static_blocker(dockerfile)
    if blocker is not None:
        raise NotAssemblable(blocker)
    args = _Args(given=dict(build_args))
    instructions = list(dockerfile.instructions)
    # ARGs before FROM (processMetaArg): expanded with the args declared so far, usable by FROM and by ARGs in the stage.
    while instructions[0].keyword == "ARG":
        instruction = instructions.pop(0)
        env = args.all_allowed()  # every arg of the line expands with the args declared before it
        for arg in instruction.args:
            key, has_default, default = arg.partition("=")
            try:
                key = process_word(key, env, escape=dockerfile.escape)
                value = process_word(default, env, escape=dockerfile.escape) if has_default else None
            except ExpansionError as exc:
                raise DockerfileError(f"{dockerfile.where(instruction)}: ARG: {exc}") from None
            args.allowed[key] = value
            args.meta[key] = value
    from_instruction = instructions.pop(0)
    try:
        base_name = process_word(from_instruction.args[0], args.all_meta(), escape=dockerfile.escape)
    except ExpansionError as exc:
        raise DockerfileError(f"{dockerfile.where(from_instruction)}: FROM: {exc}") from None
    if not base_name:
        raise DockerfileError(
            f"{dockerfile.where(from_instruction)}: base name ({from_instruction.args[0]}) should not be blank",
            fix="pass the build arg the FROM line names",
        )
    triggers = (base_config.get("config") or {}).get("OnBuild") or []
    if triggers:
        raise NotAssemblable(
            Blocker(
                dockerfile.path,
                from_instruction.line,
                "FROM",
                f"names a base with {len(triggers)} ONBUILD trigger(s), which run at build time",
            )
        )
    args.allowed = {}  # a stage starts with no declared args (newDispatchState: ResetAllowed)
    stage = _Stage(dockerfile, base_config, args)
    for instruction in instructions:
        stage.dispatch(instruction)
    if labels:
        merged = stage.config.setdefault("Labels", {})
        for key in sorted(labels):
            merged[key] = labels[key]
    config = {k: v for k, v in stage.config.items() if v not in (None, "", [], {}, False)}
    return Recipe(base_name, config, tuple(stage.history), tuple(stage.copies))


def image_config(
    base_config: Mapping[str, Any], recipe: Recipe, diff_ids: Sequence[str], *, epoch: int
) -> dict[str, Any]:
    """The new image config (parsed JSON): the base's platform fields, ``recipe``'s config, the base's history and
    rootfs with this build's appended (``diff_ids``: one per COPY/ADD, in order), ``created`` = ``epoch``."""
    layered = [step for step in recipe.history if not step.empty_layer]
    if len(layered) != len(diff_ids):
        raise ValueError(f"{len(diff_ids)} layers for {len(layered)} COPY/ADD steps")
    created = rfc3339(epoch)
    document: dict[str, Any] = {
        key: copy.deepcopy(base_config[key])
        for key in ("architecture", "os", "os.version", "os.features", "variant")
        if base_config.get(key)
    }
    history = list(copy.deepcopy(base_config.get("history") or []))
    for step in recipe.history:
        entry: dict[str, Any] = {
            "created": created,
            "created_by": step.created_by,
            "comment": HISTORY_COMMENT,
        }
        if step.empty_layer:
            entry["empty_layer"] = True
        history.append(entry)
    rootfs = base_config.get("rootfs") or {}
    document.update(
        {
            "config": copy.deepcopy(dict(recipe.config)),
            "created": created,
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": [*(rootfs.get("diff_ids") or []), *diff_ids]},
        }
    )
    return document
