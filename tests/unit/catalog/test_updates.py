"""Which upstream tags `invoke outdated` reports and `invoke bump` adds, and the catalog's ``updates:`` filter."""

from __future__ import annotations

import pytest

from ci_images.catalog.load import load_catalog
from ci_images.catalog.updates import UpdateFilter, compile_exclude, newer_tags, parse_range
from ci_images.errors import CatalogError
from ci_images.smoke import KINDS
from tests.unit.conftest import CatalogFiles

UPSTREAM = [
    "1.14.10",
    "1.21.4",
    "1.21",  # an alias upstream moves: not a release
    "latest",
    "2.0.0",
    "2.0.1",
    "2.1.0-rc1",  # older than the newest release in view: not worth a line
    "2.1.0",
    "2.2.0-beta1",
    "v2.3.0",  # another shape: upstream's duplicate spelling
    "2.1.0+ent",  # build metadata: a release of the same numbers, another spelling
    "sha-0123abc",
    "1.22.0",
]


def test_newer_releases_follow_the_newest_cataloged_version_and_prereleases_stay_apart() -> None:
    found = newer_tags(["1.14.10", "1.21.4", "2.0.0"], UPSTREAM)
    assert found.current == "2.0.0"
    assert found.newer == ("2.0.1", "2.1.0", "2.1.0+ent")
    assert found.prereleases == ("2.2.0-beta1",)


def test_nothing_newer_is_an_empty_answer() -> None:
    found = newer_tags(["2.1.0", "2.2.0-beta1"], ["2.1.0", "2.0.0", "latest", "2.2.0-beta1"])
    assert (found.current, found.newer, found.prereleases) == ("2.2.0-beta1", (), ())


def test_no_version_in_the_catalog_reads_as_one() -> None:
    assert newer_tags(["stable"], UPSTREAM).current is None


def test_versions_are_compared_as_numbers_not_text() -> None:
    assert newer_tags(["3.9.0"], ["3.10.0", "3.9.10", "3.8.99"]).newer == ("3.9.10", "3.10.0")


def test_the_filter_keeps_unwanted_lines_out() -> None:
    wanted = UpdateFilter(parse_range(">=2, <2.1"), (compile_exclude(r"\+"),))
    found = newer_tags(["1.21.4", "2.0.0"], UPSTREAM, wanted)
    assert found.newer == ("2.0.1",)
    assert found.prereleases == ()
    # The range alone admits 2.1.0 and its "+ent" spelling: only the exclude pattern keeps the latter out.
    admitted = newer_tags(["2.0.0"], UPSTREAM, UpdateFilter(parse_range(">=2, <2.2"), ()))
    assert "2.1.0+ent" in admitted.newer
    excluded = newer_tags(
        ["2.0.0"], UPSTREAM, UpdateFilter(parse_range(">=2, <2.2"), (compile_exclude(r"\+"),))
    )
    assert "2.1.0" in excluded.newer and "2.1.0+ent" not in excluded.newer


@pytest.mark.parametrize(
    ("text", "version", "admitted"),
    [
        ("<2", "1.99.99", True),
        ("<2", "2.0.0", False),
        (">=1.14", "1.14.0", True),
        (">=1.14", "1.13.9", False),
        ("<=1.14", "1.14.9", True),  # a shorter bound compares only its own numbers
        (">1", "1.9.0", False),
        ("==3", "3.12.0", True),
        ("==3", "4.0.0", False),
        ("!=3.12", "3.12.1", False),
        (">=1.14, <2", "1.21.4", True),
        (">=1.14, <2", "2.0.0", False),
    ],
)
def test_range(text: str, version: str, admitted: bool) -> None:
    assert (newer_tags(["0.1.0"], [version], UpdateFilter(parse_range(text))).newer == (version,)) is admitted


@pytest.mark.parametrize("text", ["~1.2", ">= 1.x", "<2,", "1.2", ">=1.2.3.4", ""])
def test_a_range_that_is_not_comparisons_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a comparison"):
        parse_range(text)


UPDATES = """
images:
  a:
    source: acme/a
    versions: ["1.0.0"]
    updates:
      {body}
"""


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ('range: ">=1, ~2"', 6, 14, "bad updates range: '~2' is not a comparison"),
        ('exclude: ["ok", "(unclosed"]', 6, 23, "bad updates exclude pattern: '(unclosed' is not a regular"),
        ("rnage: <2", 6, 7, "rnage"),
        ("exclude: -ent", 6, 16, "exclude"),
    ],
    ids=["range", "exclude", "unknown key", "exclude not a list"],
)
def test_a_bad_filter_is_located_in_the_catalog(
    catalog_files: CatalogFiles, body: str, line: int, column: int, message: str
) -> None:
    path = catalog_files.write(UPDATES.format(body=body))
    with pytest.raises(CatalogError) as info:
        load_catalog(path, smoke_kinds=KINDS)
    error = info.value
    assert (error.line, error.column) == (line, column), error.render()
    assert message in error.message, error.render()
    assert error.exit_code == 2 and "\n" not in error.render()


def test_the_filter_reaches_the_model(catalog_files: CatalogFiles) -> None:
    path = catalog_files.write(UPDATES.format(body='{range: "<2", exclude: ["-ent$"]}'))
    spec = load_catalog(path, smoke_kinds=KINDS).images[0]
    assert spec.updates.as_record() == {"range": "<2", "exclude": ["-ent$"]}
    plain = catalog_files.write(
        'images:\n  a:\n    source: acme/a\n    versions: ["1.0.0"]\n', name="plain.yaml"
    )
    assert load_catalog(plain, smoke_kinds=KINDS).images[0].updates == UpdateFilter()
