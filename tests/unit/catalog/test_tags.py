"""Tag rules: which tags every version receives, and which version an alias points at."""

from __future__ import annotations

import pytest

from ci_images.catalog import tags
from ci_images.catalog.tags import (
    DEFAULT_TEMPLATES,
    alias_owners,
    is_alias_template,
    parse_version,
    render,
    tags_for,
    template_fields,
    variant_tag,
)


def all_tags(versions: list[str], templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> dict[str, list[str]]:
    return {version: tags_for(templates, version, versions) for version in versions}


def test_default_templates_golden() -> None:
    versions = ["3.11.6", "3.11.7", "3.12.0", "3.13.0-rc1", "2.0"]
    assert all_tags(versions) == {
        "3.11.6": ["3.11.6"],
        "3.11.7": ["3.11.7", "3.11"],
        "3.12.0": ["3.12.0", "3.12", "latest"],
        "3.13.0-rc1": ["3.13.0-rc1"],  # a pre-release gets neither 3.13 nor latest
        "2.0": ["2.0"],  # {major}.{minor} of 2.0 is 2.0 itself: no second tag
    }


def test_aliases_follow_the_highest_release_not_catalog_order() -> None:
    versions = ["1.21.4", "2.0.0", "1.14.10", "1.21.10", "1.21.9"]
    assert alias_owners("{major}.{minor}", versions) == {"1.21": "1.21.10", "2.0": "2.0.0", "1.14": "1.14.10"}
    assert alias_owners("latest", versions) == {"latest": "2.0.0"}


def test_numeric_not_lexical_ordering() -> None:
    assert alias_owners("latest", ["1.9.0", "1.10.0"]) == {"latest": "1.10.0"}
    assert alias_owners("{major}", ["9.0.0", "10.0.0", "10.1.0"]) == {"9": "9.0.0", "10": "10.1.0"}


def test_only_prereleases_means_no_alias() -> None:
    assert alias_owners("latest", ["2.0.0-rc1", "2.0.0-beta.2"]) == {}
    assert all_tags(["2.0.0-rc1"]) == {"2.0.0-rc1": ["2.0.0-rc1"]}


def test_non_semver_versions_get_only_their_own_tag() -> None:
    assert all_tags(["stable", "edge"], ("{version}", "latest")) == {"stable": ["stable"], "edge": ["edge"]}


@pytest.mark.parametrize(
    ("tag", "variant", "expected"),
    [
        ("3.11.7", "plain", "3.11.7"),
        ("latest", "plain", "latest"),
        ("3.11.7", "seeded", "3.11.7-seeded"),
        ("3.11", "seeded", "3.11-seeded"),
        ("latest", "seeded", "seeded"),
    ],
)
def test_variant_suffix(tag: str, variant: str, expected: str) -> None:
    assert variant_tag(tag, variant, "plain") == expected


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("1.2", (1, 2, 0, True)),
        ("1.2.3", (1, 2, 3, True)),
        ("v1.2.3", (1, 2, 3, True)),
        ("1.2.3-rc1", (1, 2, 3, False)),
        ("1.2.3+build.5", (1, 2, 3, True)),
        ("0.0.1", (0, 0, 1, True)),
    ],
)
def test_parse_version(text: str, parts: tuple[int, int, int, bool]) -> None:
    parsed = parse_version(text)
    assert parsed is not None
    assert (parsed.major, parsed.minor, parsed.patch, parsed.release) == parts
    assert parsed.text == text
    assert parsed.is_prerelease is not parts[3]


@pytest.mark.parametrize("text", ["1", "latest", "1.2.3.4", "01.2.3", "1.2.x", "", "1..2"])
def test_parse_version_rejects(text: str) -> None:
    assert parse_version(text) is None


def test_release_sorts_after_its_prereleases() -> None:
    release, candidate = parse_version("1.2.3"), parse_version("1.2.3-rc1")
    assert release is not None and candidate is not None
    assert candidate < release
    newer = parse_version("1.2.4-rc1")
    assert newer is not None and release < newer


def test_templates() -> None:
    assert template_fields("{major}.{minor}-x") == {"major", "minor"}
    assert template_fields("latest") == set()
    assert is_alias_template("{major}.{minor}")
    assert is_alias_template("latest")
    assert not is_alias_template("{version}-alpine")
    assert render("{version}", "v1.2.3") == "v1.2.3"
    assert render("{major}.{minor}.{patch}", "v1.2") == "1.2.0"
    assert render("{version}-fips", "stable") == "stable-fips"
    assert {"version", "major", "minor", "patch"} == tags.FIELDS
    with pytest.raises(ValueError, match="format specs"):
        template_fields("{version:>10}")
    with pytest.raises(ValueError, match="expected '}'"):
        template_fields("{version")


def test_tags_for_has_no_duplicates_and_keeps_template_order() -> None:
    templates = ("latest", "{version}", "{major}.{minor}.{patch}")
    assert tags_for(templates, "1.2.3", ["1.2.3"]) == ["latest", "1.2.3"]
