"""The table of commands both doors are made from: each command's name, what it runs, its summary and the options
it takes (the rows of an option table that name it)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ci_images.commands.options import OPTIONS, Option, Options

S = TypeVar("S")


@dataclass(frozen=True)
class Command(Generic[S]):
    name: str
    run: Callable[[S], object]
    summary: str
    settings: Callable[
        ..., S
    ]  # what the runner builds from the parsed values (Options for the tool's commands)
    table: tuple[Option, ...] = OPTIONS
    aliases: tuple[str, ...] = ()

    @property
    def options(self) -> tuple[Option, ...]:
        return tuple(option for option in self.table if self.name in option.commands)


def _tool(
    name: str, run: Callable[[Options], object], summary: str, aliases: tuple[str, ...] = ()
) -> Command[Options]:
    return Command(name, run, summary, settings=Options, aliases=aliases)


def _loaded(module: str, name: str) -> Callable[[Options], object]:
    """A command whose module loads when it runs: a command's start imports what that command uses and nothing else
    (the signing commands' cryptography and PyNaCl, the engine commands' docker SDK, bump's ruamel.yaml)."""

    def run(options: Options) -> object:
        command: Callable[[Options], object] = getattr(
            importlib.import_module(f"ci_images.commands.{module}"), name
        )
        return command(options)

    run.__name__ = name
    run.__qualname__ = f"{module}.{name}"
    return run


COMMANDS: tuple[Command[Any], ...] = (
    _tool(
        "list-images",
        _loaded("images", "list_images"),
        "List every (image, variant, version) of the catalog: mode, source, target tags and platforms.",
        aliases=("list",),
    ),
    _tool(
        "plan",
        _loaded("images", "show_plan"),
        "Show what push-images would build, retag or skip, and why (HEAD requests upstream; changes nothing).",
    ),
    _tool(
        "build-images",
        _loaded("images", "build_images"),
        "Build every entry for every platform; the host's build is tagged with the target tags.",
        aliases=("build",),
    ),
    _tool(
        "test-images",
        _loaded("images", "test_images"),
        "Smoke-test what build-images left in the engine, on every platform this host can run.",
        aliases=("test",),
    ),
    _tool(
        "push-images",
        _loaded("images", "push_images"),
        "Build, smoke-test and push what changed as multi-arch indexes; tags move only after full success.",
        aliases=("push",),
    ),
    _tool(
        "ci",
        _loaded("images", "ci"),
        "CI's job: build and smoke-test; --push also publishes, --matrix prints the plan as a job matrix, "
        "--lock-only writes the lock file from the target, --check-public reads what was published without "
        "credentials.",
    ),
    _tool(
        "check-public",
        _loaded("images", "check_public"),
        "Check that a stranger can read every published tag and the digest the lock file pins it to (a HEAD without "
        "credentials); exit 3 names each package that refuses, with its fix.",
    ),
    _tool(
        "registry-down",
        _loaded("images", "registry_down"),
        "Stop the embedded local registry; its data stays.",
    ),
    _tool(
        "clean-engine",
        _loaded("engine", "clean_engine"),
        "Remove what ended runs left in the Docker engine (containers, temporary images), as every run does first.",
    ),
    _tool(
        "generate-key",
        _loaded("signing", "generate_key"),
        "Write a cosign key pair: cosign.key (encrypted with COSIGN_PASSWORD, mode 0600) and cosign.pub.",
    ),
    _tool(
        "sign-images",
        _loaded("signing", "sign_images"),
        "Sign (cosign format) what the catalog's tags point to on the target now and this key has not signed yet.",
    ),
    _tool(
        "verify-images",
        _loaded("signing", "verify"),
        "Verify every catalog tag on the target: its signature, its payload, and its digest against the lock file; "
        "--rebuild: that each assembled tag holds exactly what its inputs make.",
    ),
    _tool(
        "outdated",
        _loaded("upkeep", "outdated"),
        "Per image, the upstream tags newer than its newest cataloged version (tag lists only; exits 0 either way).",
    ),
    _tool(
        "bump",
        _loaded("upkeep", "bump"),
        "Add the releases `outdated` finds to the catalog, keeping its comments and layout; print the diff.",
    ),
    _tool(
        "docs",
        _loaded("upkeep", "docs"),
        "Write README's table of every published reference from the catalog; --check only says whether it is current.",
    ),
)
