"""The lab's own door, made like the product's (one table of commands and options, the same guarded runner):
``invoke lab-up`` / ``invoke lab-down``, or ``python -m ci_images.lab up|down``.

``lab-up`` prints ``export`` lines to eval: the environment that points ci-images at the lab instead of Docker Hub
and GHCR. The target's password is written to a 0600 file and read from there, never printed.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ci_images.cache import cache_home
from ci_images.catalog.load import catalog_path, load_catalog
from ci_images.cli.argv import main
from ci_images.cli.table import Command
from ci_images.commands.options import Option
from ci_images.lab import lab
from ci_images.smoke.plugins import known_probes

UP, DOWN = "lab-up", "lab-down"


@dataclass
class LabOptions:
    workdir: str | None = None
    catalog: str | None = None
    debug: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def folder(self) -> Path:
        return Path(self.workdir) if self.workdir else cache_home(self.env) / "lab-run"


LAB_OPTIONS: tuple[Option, ...] = (
    Option(
        "workdir",
        "where the lab keeps its state",
        frozenset({UP, DOWN}),
        metavar="DIR",
        default="~/.cache/ci-images/lab-run",
    ),
    Option(
        "catalog",
        "the catalog whose upstream images the lab stands in for",
        frozenset({UP}),
        metavar="PATH",
        env="CI_IMAGES_CATALOG",
        default="./images.yaml",
    ),
    Option("debug", "show debug lines and tracebacks", frozenset({UP, DOWN}), kind="flag"),
)


def standins_for(catalog_file: Path) -> tuple[dict[str, list[str]], list[str], dict[str, list[str]]]:
    """What the lab must serve as upstream for a catalog: Docker Hub repository path -> versions, the platforms,
    and "repo:version" -> platforms for the versions the catalog takes on fewer platforms than the others (the lab
    serves only those, as an old amd64-only upstream release has only amd64)."""
    catalog = load_catalog(catalog_file, smoke_kinds=known_probes())
    standins: dict[str, list[str]] = {}
    platforms: list[str] = []
    needs: dict[
        str, set[str] | None
    ] = {}  # "repo:version" -> platforms some entry takes; None: all upstream has
    for spec in catalog.images:
        for release in spec.releases:
            if not release.source.is_docker_hub:
                continue
            versions = standins.setdefault(release.source.path, [])
            versions += [] if release.version in versions else [release.version]
            platforms += [p for p in release.platforms if p not in platforms]
            key = f"{release.source.path}:{release.version}"
            if not release.platforms or needs.get(key, set()) is None:
                needs[key] = None
            else:
                needs[key] = (needs.get(key) or set()) | set(release.platforms)
    platforms = platforms or list(catalog.platforms)
    narrowed = {
        key: [p for p in platforms if p in need]
        for key, need in needs.items()
        if need is not None and need != set(platforms)
    }
    return standins, platforms, narrowed


def export_lines(env: Mapping[str, str], secret_dir: Path) -> list[str]:
    """`export` lines for eval; a password is read from a 0600 file rather than printed."""
    lines = []
    for key, value in env.items():
        if key.endswith("_PASSWORD"):
            secret_dir.mkdir(parents=True, exist_ok=True)
            path = secret_dir / key.lower()
            path.touch(mode=0o600)
            path.write_text(value, encoding="utf-8")
            lines.append(f'export {key}="$(cat {shlex.quote(str(path))})"')
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    return lines


def up(options: LabOptions) -> lab.Lab:
    from ci_images.engine.dockerd import ensure_engine

    ensure_engine()
    standins, platforms, narrowed = standins_for(catalog_path(options.catalog, options.env))
    started = lab.lab_up(options.folder, standins=standins, platforms=platforms, narrowed=narrowed)
    sys.stdout.write("".join(line + "\n" for line in export_lines(started.env(), options.folder)))
    return started


def down(options: LabOptions) -> bool:
    return lab.lab_down(options.folder)


LAB_COMMANDS: tuple[Command[LabOptions], ...] = (
    Command(
        UP,
        up,
        "Start the hermetic image lab (TLS registries, stand-in upstream images) and print the environment to export.",
        table=LAB_OPTIONS,
        settings=LabOptions,
        aliases=("up",),
    ),
    Command(
        DOWN,
        down,
        "Stop the lab started by lab-up and remove its registries' data.",
        table=LAB_OPTIONS,
        settings=LabOptions,
        aliases=("down",),
    ),
)


def lab_main(argv: Sequence[str] | None = None) -> int:
    return main(
        argv,
        commands=LAB_COMMANDS,
        prog="python -m ci_images.lab",
        description="The hermetic image lab: TLS registries on loopback and stand-in upstream images.",
    )
