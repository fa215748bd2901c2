"""Shared fixtures for the unit tests of the pure core: small catalogs on disk, plan entries, a clean secret list."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci_images import log as log_module
from ci_images.catalog.probes import named_smoke
from ci_images.catalog.refs import parse_repository
from ci_images.plan.entries import Entry

PINNABLE_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nHEALTHCHECK CMD true\n"


@dataclass
class CatalogFiles:
    """Writes catalogs (dedented YAML) into a temporary folder, with build folders holding a real Dockerfile."""

    root: Path

    def build_folder(self, name: str = "img", dockerfile: str = PINNABLE_DOCKERFILE) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        return folder

    def write(self, text: str, *, name: str = "images.yaml", build_folders: Sequence[str] = ()) -> Path:
        for folder in build_folders:
            self.build_folder(folder)
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path


@pytest.fixture
def catalog_files(tmp_path: Path) -> CatalogFiles:
    return CatalogFiles(tmp_path)


@pytest.fixture
def secrets() -> Iterator[set[str]]:
    """An empty secret list for the test (the logger's is process-wide); the previous one comes back afterwards."""
    saved = set(log_module._secrets)
    log_module._secrets.clear()
    yield log_module._secrets
    log_module._secrets.clear()
    log_module._secrets.update(saved)


EntryFactory = Callable[..., Entry]


@pytest.fixture
def make_entry(tmp_path: Path) -> EntryFactory:
    """A plan entry with a real build context (Dockerfile + one script) unless ``mode="mirror"``."""

    def factory(
        *,
        image: str = "local-kms",
        variant: str = "plain",
        version: str = "3.11.7",
        mode: str = "build",
        tags: Sequence[str] = ("3.11.7", "3.11", "latest"),
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
        build_args: Mapping[str, str] | None = None,
        context: Path | None = None,
    ) -> Entry:
        folder: Path | None = None
        dockerfile: Path | None = None
        if mode == "build":
            folder = context or tmp_path / "context"
            if context is None and not folder.exists():
                folder.mkdir()
                (folder / "Dockerfile").write_text(PINNABLE_DOCKERFILE, encoding="utf-8")
                (folder / "init.sh").write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
            dockerfile = folder / "Dockerfile"
        return Entry(
            image=image,
            variant=variant,
            version=version,
            mode=mode,
            source=parse_repository(f"docker.io/nsmithuk/{image}"),
            pull=parse_repository(f"docker.io/nsmithuk/{image}"),
            target=parse_repository(f"registry.example.test/team/{image}"),
            tags=tuple(tags),
            platforms=tuple(platforms),
            context=folder,
            dockerfile=dockerfile,
            build_args=dict(build_args or {}),
            smoke=named_smoke("kms"),
            title=image,
            description=f"{image} for tests",
        )

    return factory
