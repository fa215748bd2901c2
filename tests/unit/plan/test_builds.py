"""How an entry is made, and why: assembled, by the engine (naming the Dockerfile's line) or mirrored; and the recipe
hash tells an assembled image from an engine build of the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_images.assemble import dockerfile as dockerfile_module
from ci_images.catalog.load import load_catalog
from ci_images.plan import builds
from ci_images.plan.builds import ASSEMBLED, ENGINE, MIRROR, HowBuilt, how_built
from ci_images.plan.entries import expand
from ci_images.plan.recipe import recipe_hash
from ci_images.smoke import KINDS
from tests.unit.conftest import EntryFactory

REPO_ROOT = Path(__file__).resolve().parents[3]
BASE = "sha256:" + "1" * 64


@pytest.fixture(autouse=True)
def fresh_verdicts() -> None:
    builds._classified.cache_clear()  # a verdict is kept per process: each test writes its own Dockerfiles


def context(tmp_path: Path, dockerfile: str) -> Path:
    folder = tmp_path / "ctx"
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    (folder / "conf.txt").write_text("x\n", encoding="utf-8")
    return folder


def test_every_shipped_built_entry_is_assembled_and_mirrors_are_copies() -> None:
    entries = expand(
        load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS), registry="registry.example/ci"
    )
    ways = {(e.mode, e.how_built.way) for e in entries}
    assert ways == {("build", ASSEMBLED), ("mirror", MIRROR)}
    assert all(e.how_built.reason for e in entries)


@pytest.mark.parametrize(
    ("dockerfile", "reason"),
    [
        (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY conf.txt /etc/\nRUN true\n",
            "ctx/Dockerfile:4: RUN runs a command",
        ),
        ("ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS a\nFROM a\n", "ctx/Dockerfile:3: FROM starts a second stage"),
        (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nADD https://example.invalid/x /x\n",
            "ctx/Dockerfile:3: ADD downloads",
        ),
        (
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY --chown=vault conf.txt /x\n",
            "--chown=vault names a user",
        ),
        (
            "ENV A=1\nFROM scratch\n",
            "the assembly refuses it: ctx/Dockerfile:1: ENV before FROM",
        ),
    ],
)
def test_a_dockerfile_the_assembly_cannot_carry_out_goes_to_the_engine_and_says_why(
    make_entry: EntryFactory, tmp_path: Path, dockerfile: str, reason: str
) -> None:
    made = how_built(make_entry(context=context(tmp_path, dockerfile)))
    assert made.way == ENGINE and not made.assembled
    assert reason in made.reason, made.reason


def test_metadata_and_context_copies_are_assembled(make_entry: EntryFactory, tmp_path: Path) -> None:
    folder = context(
        tmp_path, 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENV A=1\nCOPY conf.txt /etc/\nCMD ["x"]\nUSER 1000\n'
    )
    assert how_built(make_entry(context=folder)) == HowBuilt(ASSEMBLED, builds.ASSEMBLED_REASON)


def test_without_buildkits_parser_every_dockerfile_goes_to_the_engine(
    make_entry: EntryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dockerfile_module, "buildkit_parser", None)
    made = how_built(make_entry())
    assert made.way == ENGINE and "BuildKit's parser (PyPI dockerfile) has no wheel" in made.reason


def test_the_recipe_tells_an_assembled_image_from_an_engine_build_of_the_same_inputs(
    make_entry: EntryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image the engine built is assembled at the next push (and back, on a machine without the parser)."""
    entry = make_entry()
    assembled = recipe_hash(entry, BASE)
    builds._classified.cache_clear()
    monkeypatch.setattr(dockerfile_module, "buildkit_parser", None)
    assert how_built(entry).way == ENGINE
    assert recipe_hash(entry, BASE) != assembled


def test_a_verdict_is_read_once_per_dockerfile_context_and_args(make_entry: EntryFactory) -> None:
    entry = make_entry()
    how_built(entry)
    how_built(make_entry(variant="other"))
    assert builds._classified.cache_info().misses == 1
