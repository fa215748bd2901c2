"""The plan: catalog -> entries (golden test of the shipped catalog), and decide()."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ci_images.catalog.load import load_catalog
from ci_images.catalog.model import Catalog
from ci_images.errors import UsageError
from ci_images.plan.decide import TargetState, decide
from ci_images.plan.entries import Entry, expand, select, split_patterns
from ci_images.plan.recipe import RECIPE_LABEL, SOURCE_DIGEST_LABEL, mirror_recipe
from ci_images.smoke import KINDS
from tests.unit.conftest import CatalogFiles, EntryFactory

MAIN = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "shipped_catalog.json"
UPDATE_ENV = "UPDATE_GOLDEN"

D_OLD = "sha256:" + "1" * 64
D_NEW = "sha256:" + "2" * 64
D_TARGET = "sha256:" + "3" * 64
D_OTHER = "sha256:" + "4" * 64
R_OLD = "sha256:" + "a" * 64
R_NEW = "sha256:" + "b" * 64


def shipped() -> Catalog:
    return load_catalog(MAIN / "images.yaml", smoke_kinds=KINDS)


def golden_row(entry: Entry, root: Path) -> dict[str, Any]:
    """Everything the plan computes for an entry, with paths relative to the catalog (so the file is portable)."""
    return {
        **entry.as_row(),
        "pull": entry.pull_ref,
        "context": entry.context.relative_to(root).as_posix() if entry.context else None,
        "dockerfile": entry.dockerfile.relative_to(root).as_posix() if entry.dockerfile else None,
        "build_args": dict(entry.build_args),
        "title": entry.title,
        "description": entry.description,
    }


def shipped_rows() -> list[dict[str, Any]]:
    catalog = shipped()
    assert catalog.registry is not None
    return [golden_row(e, catalog.root.resolve()) for e in expand(catalog, registry=catalog.registry)]


def test_shipped_catalog_matches_golden() -> None:
    rows = shipped_rows()
    if (
        os.environ.get(UPDATE_ENV) == "1"
    ):  # an intended change: rewrite the golden file, then compare as usual
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert rows == expected, f"the plan changed; if intended, run: {UPDATE_ENV}=1 pytest {__file__}"


def test_shipped_catalog_tag_rules() -> None:
    catalog = shipped()
    assert catalog.registry is not None
    tags = {e.key: e.tags for e in expand(catalog, registry=catalog.registry)}
    assert tags["local-kms/plain/3.12.0"] == ("3.12.0", "3.12", "latest")
    assert tags["local-kms/plain/3.11.7"] == ("3.11.7", "3.11")
    assert tags["local-kms/seeded/3.12.0"] == ("3.12.0-seeded", "3.12-seeded", "seeded")
    assert tags["local-kms/seeded/3.11.7"] == ("3.11.7-seeded", "3.11-seeded")
    assert tags["local-kms/plain/3.11.1"] == ("3.11.1",)  # 3.11 goes to the newest patch, 3.11.7
    assert tags["vault/plain/1.10.0"] == ("1.10.0", "1.10")
    assert tags["vault/plain/2.0.0"] == ("2.0.0", "2.0", "latest")
    assert tags["local-kms-upstream/plain/3.11.1"] == ("3.11.1",)
    assert tags["vault-upstream/plain/1.10.0"] == ("1.10.0",)
    # every target tag has exactly one owner
    owned = [
        (entry.target, tag) for entry in expand(catalog, registry=catalog.registry) for tag in entry.tags
    ]
    assert len(owned) == len(set(owned))


def test_expand_applies_mirror_registry_and_platforms() -> None:
    catalog = shipped()
    every = expand(catalog, registry="127.0.0.1:5000/ci/", mirror="mirror.test:5001")
    entries = select(catalog, every, images="vault", platforms=["linux/arm64"])
    assert [e.key for e in entries] == [
        "vault/plain/1.10.0",
        "vault/plain/1.14.10",
        "vault/plain/1.21.4",
        "vault/plain/2.0.0",
    ]
    first = entries[1]
    assert first.source_ref == "docker.io/hashicorp/vault:1.14.10"
    assert first.pull_ref == "mirror.test:5001/hashicorp/vault:1.14.10"
    assert first.tag_refs == ("127.0.0.1:5000/ci/vault:1.14.10", "127.0.0.1:5000/ci/vault:1.14")
    assert first.platforms == ("linux/arm64",)
    # 1.10.0 is the official image: docker.io/vault, which the mirror serves as library/vault
    assert entries[0].pull_ref == "mirror.test:5001/library/vault:1.10.0"


@pytest.mark.parametrize(
    ("images", "keys"),
    [
        (
            "local-kms/seeded",
            ["local-kms/seeded/3.11.1", "local-kms/seeded/3.11.7", "local-kms/seeded/3.12.0"],
        ),
        ("local-kms:3.12.0", ["local-kms/plain/3.12.0", "local-kms/seeded/3.12.0"]),
        ("*/seeded/3.11.*", ["local-kms/seeded/3.11.1", "local-kms/seeded/3.11.7"]),
        ("vault/plain/2.0.0, local-kms/plain/3.11.7", ["local-kms/plain/3.11.7", "vault/plain/2.0.0"]),
        (["vault:1.14.10", "vault:2.0.0"], ["vault/plain/1.14.10", "vault/plain/2.0.0"]),
    ],
)
def test_expand_filters(images: str | list[str], keys: list[str]) -> None:
    catalog = shipped()
    entries = select(catalog, expand(catalog, registry="ghcr.io/acme/ci"), images=images)
    assert [e.key for e in entries] == keys


def test_expand_filter_matching_nothing_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        select(shipped(), expand(shipped(), registry="ghcr.io/acme/ci"), images="valt")
    assert info.value.exit_code == 2
    assert info.value.fix is not None and "local-kms, vault" in info.value.fix


def test_split_patterns() -> None:
    assert split_patterns(None) == []
    assert split_patterns("a, b,,c ") == ["a", "b", "c"]
    assert split_patterns(["a,b", "c"]) == ["a", "b", "c"]


def test_expand_mirror_entry(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        """
        images:
          tool:
            source: quay.io/acme/tool
            versions: ["1.0.0"]
            platforms: [linux/amd64]
        """
    )
    (entry,) = expand(load_catalog(path, smoke_kinds=KINDS), registry="ghcr.io/acme/ci", mirror="mirror.test")
    assert entry.mode == "mirror"
    assert entry.context is None and entry.dockerfile is None
    assert entry.pull_ref == "quay.io/acme/tool:1.0.0"  # the Hub mirror does not stand in for quay.io
    assert entry.as_row() == {
        "image": "tool",
        "variant": "plain",
        "version": "1.0.0",
        "mode": "mirror",
        "source": "quay.io/acme/tool:1.0.0",
        "tags": ["ghcr.io/acme/ci/tool:1.0.0", "ghcr.io/acme/ci/tool:1.0", "ghcr.io/acme/ci/tool:latest"],
        "platforms": ["linux/amd64"],
        "smoke": None,
        "builds": "mirror",
        "builds_reason": "copied from upstream registry to registry, byte for byte",
    }


# ---- decide -------------------------------------------------------------------------------------------------------


def built_state(
    entry: Entry, *, source: str = D_OLD, recipe: str = R_OLD, aliases: str | None = D_TARGET
) -> TargetState:
    return TargetState(
        digest=D_TARGET,
        labels={SOURCE_DIGEST_LABEL: source, RECIPE_LABEL: recipe},
        tag_digests={entry.tags[0]: D_TARGET, **dict.fromkeys(entry.tags[1:], aliases)},
    )


def test_decide_new(make_entry: EntryFactory) -> None:
    entry = make_entry()
    decision = decide(entry, source_digest=D_OLD, recipe=R_OLD, current=TargetState(None))
    assert (decision.action, decision.reason) == (
        "build",
        "new: registry.example.test/team/local-kms:3.11.7 does not exist",
    )
    assert decision.source_digest == D_OLD and decision.recipe == R_OLD


def test_decide_skip_when_up_to_date(make_entry: EntryFactory) -> None:
    entry = make_entry()
    decision = decide(entry, source_digest=D_OLD, recipe=R_OLD, current=built_state(entry))
    assert (decision.action, decision.reason) == ("skip", "up to date")


def test_decide_upstream_changed(make_entry: EntryFactory) -> None:
    entry = make_entry()
    decision = decide(entry, source_digest=D_NEW, recipe=R_NEW, current=built_state(entry))
    assert (decision.action, decision.reason) == ("build", "upstream changed: 111111111111 -> 222222222222")


def test_decide_recipe_changed(make_entry: EntryFactory) -> None:
    entry = make_entry()
    decision = decide(entry, source_digest=D_OLD, recipe=R_NEW, current=built_state(entry))
    assert (decision.action, decision.reason) == ("build", "recipe changed: aaaaaaaaaaaa -> bbbbbbbbbbbb")


def test_decide_forced(make_entry: EntryFactory) -> None:
    entry = make_entry()
    decision = decide(entry, source_digest=D_OLD, recipe=R_OLD, current=built_state(entry), force=True)
    assert (decision.action, decision.reason) == ("build", "forced (--force)")
    mirror = make_entry(mode="mirror")
    assert decide(mirror, source_digest=D_OLD, recipe=None, current=TargetState(None), force=True).action == (
        "mirror"
    )


def test_decide_not_built_by_us(make_entry: EntryFactory) -> None:
    entry = make_entry()
    current = TargetState(digest=D_TARGET, labels={"maintainer": "someone"})
    decision = decide(entry, source_digest=D_OLD, recipe=R_OLD, current=current)
    assert decision.action == "build"
    assert "no recipe label" in decision.reason


@pytest.mark.parametrize("alias_digest", [D_OTHER, None])
def test_decide_retag_when_an_alias_is_stale(make_entry: EntryFactory, alias_digest: str | None) -> None:
    entry = make_entry()
    current = TargetState(
        digest=D_TARGET,
        labels={SOURCE_DIGEST_LABEL: D_OLD, RECIPE_LABEL: R_OLD},
        tag_digests={"3.11.7": D_TARGET, "3.11": D_TARGET, "latest": alias_digest},
    )
    decision = decide(entry, source_digest=D_OLD, recipe=R_OLD, current=current)
    assert (decision.action, decision.reason) == ("retag", "up to date; moving latest")


def test_decide_record(make_entry: EntryFactory) -> None:
    entry = make_entry()
    record = decide(entry, source_digest=D_OLD, recipe=R_OLD, current=built_state(entry)).as_record()
    assert record["action"] == "skip"
    assert record["current_digest"] == D_TARGET
    assert record["source_digest"] == D_OLD
    assert record["recipe"] == R_OLD
    assert record["tags"][0] == "registry.example.test/team/local-kms:3.11.7"


def test_decide_mirror_new_and_byte_copy(make_entry: EntryFactory) -> None:
    entry = make_entry(mode="mirror", tags=("1.0.0", "latest"))
    assert decide(entry, source_digest=D_OLD, recipe=None, current=TargetState(None)).action == "mirror"
    copy = TargetState(digest=D_OLD, tag_digests={"1.0.0": D_OLD, "latest": D_OLD})
    assert decide(entry, source_digest=D_OLD, recipe=None, current=copy).action == "skip"
    changed = decide(entry, source_digest=D_NEW, recipe=None, current=copy)
    assert (changed.action, changed.reason) == (
        "mirror",
        "target holds 111111111111, upstream is 222222222222 (a new upstream release, or the target's tag was moved)",
    )
    stale = TargetState(digest=D_OLD, tag_digests={"1.0.0": D_OLD, "latest": D_OTHER})
    assert decide(entry, source_digest=D_OLD, recipe=None, current=stale).action == "retag"


def test_decide_mirror_reuploaded_with_labels(make_entry: EntryFactory) -> None:
    # A mirror re-uploaded through the engine has its own digest; its labels say what it was made from.
    entry = make_entry(mode="mirror", tags=("1.0.0",))
    current = TargetState(
        digest=D_TARGET,
        labels={SOURCE_DIGEST_LABEL: D_OLD, RECIPE_LABEL: R_OLD},
        tag_digests={"1.0.0": D_TARGET},
    )
    assert decide(entry, source_digest=D_OLD, recipe=R_OLD, current=current).action == "skip"
    assert decide(entry, source_digest=D_NEW, recipe=R_NEW, current=current).action == "mirror"
    platforms_changed = decide(entry, source_digest=D_OLD, recipe=R_NEW, current=current)
    assert (platforms_changed.action, platforms_changed.reason[:15]) == ("mirror", "recipe changed:")


def test_decide_mirror_byte_copy_with_platforms_changed(make_entry: EntryFactory) -> None:
    """A byte copy is up to date for `platforms: all` and for the platforms it holds; narrowing writes a new index."""
    held = TargetState(digest=D_OLD, tag_digests={"1.0.0": D_OLD}, platforms=("linux/amd64", "linux/arm64"))
    every = make_entry(mode="mirror", tags=("1.0.0",), platforms=())
    assert decide(every, source_digest=D_OLD, recipe=R_OLD, current=held).action == "skip"
    same = make_entry(mode="mirror", tags=("1.0.0",), platforms=("linux/arm64", "linux/amd64"))
    assert decide(same, source_digest=D_OLD, recipe=R_OLD, current=held).action == "skip"
    narrower = make_entry(mode="mirror", tags=("1.0.0",), platforms=("linux/amd64",))
    decision = decide(narrower, source_digest=D_OLD, recipe=R_OLD, current=held)
    assert (decision.action, decision.reason) == (
        "mirror",
        "platforms changed: target holds linux/amd64, linux/arm64; asked for linux/amd64",
    )


def test_decide_mirror_narrowed_copy_is_compared_by_its_annotations(make_entry: EntryFactory) -> None:
    """A narrowed copy has its own digest; the annotations it carries say which upstream and platforms made it,
    so an unchanged upstream skips with nothing read from upstream but the HEAD."""
    entry = make_entry(mode="mirror", tags=("1.0.0",), platforms=("linux/amd64",))
    narrowed = TargetState(
        digest=D_TARGET,
        labels={SOURCE_DIGEST_LABEL: D_OLD, RECIPE_LABEL: R_OLD},
        tag_digests={"1.0.0": D_TARGET},
        platforms=("linux/amd64",),
    )
    assert decide(entry, source_digest=D_OLD, recipe=R_OLD, current=narrowed).action == "skip"
    moved = decide(entry, source_digest=D_NEW, recipe=R_NEW, current=narrowed)
    assert (moved.action, moved.reason) == ("mirror", "upstream changed: 111111111111 -> 222222222222")
    widened = decide(entry, source_digest=D_OLD, recipe=R_NEW, current=narrowed)
    assert (widened.action, widened.reason) == ("mirror", "recipe changed: aaaaaaaaaaaa -> bbbbbbbbbbbb")


def test_mirror_recipe_tells_platforms_and_the_old_engine_uploads_apart(make_entry: EntryFactory) -> None:
    every = make_entry(mode="mirror", platforms=())
    amd64 = make_entry(mode="mirror", platforms=("linux/amd64",))
    both = make_entry(mode="mirror", platforms=("linux/arm64", "linux/amd64"))
    both_sorted = make_entry(mode="mirror", platforms=("linux/amd64", "linux/arm64"))
    recipes = {mirror_recipe(e, D_OLD) for e in (every, amd64, both)}
    assert len(recipes) == 3
    assert mirror_recipe(both, D_OLD) == mirror_recipe(both_sorted, D_OLD)
    assert mirror_recipe(amd64, D_OLD) != mirror_recipe(amd64, D_NEW)


def test_expand_uses_per_version_source_platforms_and_target(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(
        """
        images:
          vault:
            source: docker.io/hashicorp/vault
            versions:
              - {version: "1.10.0", source: docker.io/library/vault, platforms: [linux/amd64]}
              - "2.0.0"
            platforms: [linux/amd64, linux/arm64]
          vault-upstream:
            source: docker.io/library/vault
            target: mirror/library/vault
            versions: ["1.10.0"]
            platforms: all
            tags: ["{version}"]
        """
    )
    old, new, mirror = expand(
        load_catalog(path, smoke_kinds=KINDS), registry="ghcr.io/acme/ci", mirror="127.0.0.1:5001"
    )
    assert (old.source_ref, old.pull_ref) == (
        "docker.io/library/vault:1.10.0",
        "127.0.0.1:5001/library/vault:1.10.0",
    )
    assert old.platforms == ("linux/amd64",) and new.platforms == ("linux/amd64", "linux/arm64")
    assert new.source_ref == "docker.io/hashicorp/vault:2.0.0"
    assert mirror.tag_refs == ("ghcr.io/acme/ci/mirror/library/vault:1.10.0",)
    assert mirror.all_platforms and mirror.as_row()["platforms"] == ["all"]
    # --platform narrows every entry, `all` included
    catalog = load_catalog(path, smoke_kinds=KINDS)
    (narrowed,) = select(
        catalog,
        expand(catalog, registry="ghcr.io/acme/ci"),
        images="vault-upstream",
        platforms=["linux/arm64"],
    )
    assert narrowed.platforms == ("linux/arm64",)
