"""The dispatch of the one stage: each instruction carried out on the config being built, as the classic builder's
dispatchers do (moby/moby ``builder/dockerfile/dispatchers.go``; see ``config.py`` for the rules in short).

The config starts from the base's (only the fields an image config keeps), and every instruction adds its history
line; COPY and ADD become ``CopyStep``s for ``layers.py``.
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ci_images.assemble.dockerfile import Blocker, Dockerfile, DockerfileError, Instruction, NotAssemblable
from ci_images.assemble.gotypes import (
    exposed_ports,
    format_go_duration,
    go_list,
    parse_go_duration,
    valid_signal,
)
from ci_images.assemble.recipe import (
    CONFIG_FIELDS,
    DEFAULT_PATH,
    DEFAULT_SHELL,
    BuildArgs,
    CopyStep,
    HistoryStep,
    clean_path,
    env_map,
)
from ci_images.assemble.shell import ExpansionError, process_word, process_words

_NUMERIC_OWNER = re.compile(r"^([0-9]+)(?::([0-9]+))?$")
_OCTAL_MODE = re.compile(r"^[0-7]{1,4}$")


class Stage:
    """The dispatch state of the one stage: the config being built, its history and copies."""

    def __init__(self, dockerfile: Dockerfile, base: Mapping[str, Any], args: BuildArgs) -> None:
        self.dockerfile = dockerfile
        self.args = args
        inherited = base.get("config") or {}
        self.config: dict[str, Any] = {
            k: copy.deepcopy(inherited[k]) for k in CONFIG_FIELDS if inherited.get(k) is not None
        }
        env = list(self.config.get("Env") or [])
        if "PATH" not in env_map(env):
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
        env = env_map(self.config.get("Env") or [])
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
            self._check_source(instruction, source)
        if not dest_text:
            raise DockerfileError(
                f"{self.dockerfile.where(instruction)}: {instruction.keyword} has an empty destination"
            )
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
                self._chown(instruction, chown_text),
                self._chmod(instruction, chmod_text),
                tuple(self.known_dirs),
                created_by,
            )
        )
        self.history.append(HistoryStep(created_by, empty_layer=False))

    def _blocker(self, instruction: Instruction, reason: str) -> NotAssemblable:
        return NotAssemblable(Blocker(self.dockerfile.path, instruction.line, instruction.keyword, reason))

    def _check_source(self, instruction: Instruction, source: str) -> None:
        """A URL (ADD downloads it, COPY refuses it) or a git repository needs the engine."""
        if source.startswith(("http://", "https://")):
            if instruction.keyword == "COPY":
                raise self.fail(
                    instruction,
                    "source can't be a URL for COPY",
                    fix="use ADD, or download the file into the context",
                )
            raise self._blocker(instruction, f"downloads a URL ({source})")
        if source.startswith(("git@", "git://", "ssh://")):
            raise self._blocker(instruction, f"clones a git repository ({source})")

    def _chown(self, instruction: Instruction, text: str) -> tuple[int, int] | None:
        """``--chown=UID[:GID]``; a name needs the base's /etc/passwd, hence the engine."""
        if not text:
            return None
        owner = _NUMERIC_OWNER.match(text)
        if owner is None:
            raise self._blocker(
                instruction,
                f"--chown={text} names a user or group (resolving it needs the base's /etc/passwd; numeric "
                "UID:GID is assembled)",
            )
        return int(owner.group(1)), int(owner.group(2) or owner.group(1))

    def _chmod(self, instruction: Instruction, text: str) -> int | None:
        if not text:
            return None
        if not _OCTAL_MODE.match(text):
            raise self._blocker(instruction, f"--chmod={text} is not an octal mode")
        return int(text, 8)

    do_add = do_copy
