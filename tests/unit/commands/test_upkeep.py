"""bump's edit of the catalog's text (comments and layout kept) and docs' reference table, without a registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_images.catalog.edit import add_versions
from ci_images.catalog.load import load_catalog
from ci_images.plan.entries import expand
from ci_images.report import readme as docs
from ci_images.smoke import KINDS
from tests.doors import clean_env, run_door

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_bump_keeps_every_comment_and_changes_only_the_versions_line() -> None:
    before = (REPO_ROOT / "images.yaml").read_text(encoding="utf-8")
    after = add_versions(before, {"vault": ["2.0.1", "2.1.0"], "local-kms": ["3.12.0"]})  # 3.12.0 is there
    assert after == before.replace('      - "2.0.0"\n', '      - "2.0.0"\n      - "2.0.1"\n      - "2.1.0"\n')


def test_a_version_with_its_own_settings_counts_as_listed() -> None:
    before = (
        'images:\n  vault:\n    versions:\n      - {version: "1.10.0", source: docker.io/library/vault}\n'
    )
    after = add_versions(before, {"vault": ["1.10.0", "1.14.0"]})
    assert after == before + "      - 1.14.0\n"  # no plain neighbour to copy: plain, as YAML reads it as text


def test_block_lists_keep_their_indentation_quoting_and_comments() -> None:
    before = (
        "# catalog\n"
        "images:\n"
        "  a:\n"
        "    # the versions we test\n"
        "    versions:\n"
        "      - '1.0.0'  # first\n"
        "      - '1.1.0'\n"
        "    source: acme/a  # upstream\n"
        "  b:\n"
        "    versions:\n"
        "      - 1.0.0\n"
        "    source: acme/b\n"
    )
    after = add_versions(before, {"a": ["1.2.0"], "b": ["2.0"]})
    assert after == before.replace("      - '1.1.0'\n", "      - '1.1.0'\n      - '1.2.0'\n").replace(
        "      - 1.0.0\n",
        '      - 1.0.0\n      - "2.0"\n',  # plain 2.0 would read as a number
    )


def test_an_image_without_versions_is_refused() -> None:
    with pytest.raises(ValueError, match="'nope' has no 'versions' list"):
        add_versions("images:\n  a:\n    versions: []\n", {"nope": ["1.0.0"]})


GOOD = """
registry: ghcr.io/acme/ci
platforms: [linux/amd64]
images:
  kms:
    source: docker.io/nsmithuk/local-kms
    versions: ["3.9.0", "3.11.7"]
"""


def test_the_table_lists_every_reference_in_catalog_order(tmp_path: Path) -> None:
    (tmp_path / "images.yaml").write_text(GOOD, encoding="utf-8")
    catalog = load_catalog(tmp_path / "images.yaml", smoke_kinds=KINDS)
    table = docs.references_table(catalog, expand(catalog, registry="ghcr.io/acme/ci")).splitlines()
    assert table[2:] == [
        (
            "| kms | 3.9.0 | plain | `ghcr.io/acme/ci/kms:3.9.0`<br>`ghcr.io/acme/ci/kms:3.9` | amd64 "
            "| `docker.io/nsmithuk/local-kms:3.9.0` |"
        ),
        (
            "| kms | 3.11.7 | plain | `ghcr.io/acme/ci/kms:3.11.7`<br>`ghcr.io/acme/ci/kms:3.11`<br>"
            "`ghcr.io/acme/ci/kms:latest` | amd64 | `docker.io/nsmithuk/local-kms:3.11.7` |"
        ),
    ]


def test_splice_replaces_only_what_lies_between_the_markers() -> None:
    readme = f"intro\n{docs.BEGIN}\nold table\n{docs.END}\noutro\n"
    assert docs.splice(readme, "new\n") == f"intro\n{docs.BEGIN}\nnew\n{docs.END}\noutro\n"
    with pytest.raises(ValueError, match="no reference table markers"):
        docs.splice(f"{docs.END}\n{docs.BEGIN}\n", "new\n")


def test_docs_check_fails_on_a_stale_readme_and_docs_repairs_it(tmp_path: Path) -> None:
    (tmp_path / "images.yaml").write_text(GOOD, encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{docs.BEGIN}\n| stale |\n{docs.END}\n", encoding="utf-8")
    env = clean_env()
    check = ["docs", "--catalog", str(tmp_path / "images.yaml"), "--check"]
    stale = run_door("module", check, env)
    assert stale.returncode == 2 and "reference table is not what" in stale.stderr
    assert "| stale |" in readme.read_text()  # --check changes nothing
    assert run_door("invoke", check[:-1], env).returncode == 0
    assert "| stale |" not in readme.read_text()
    assert run_door("module", check, env).returncode == 0


def test_the_readme_shows_what_the_shipped_catalog_publishes() -> None:
    """README.md's reference table is what `invoke docs` makes from images.yaml: run `invoke docs` when this fails."""
    catalog = load_catalog(REPO_ROOT / "images.yaml", smoke_kinds=KINDS)
    assert catalog.registry is not None
    current = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert (
        docs.splice(current, docs.references_table(catalog, expand(catalog, registry=catalog.registry)))
        == current
    )


def test_bump_refuses_an_edit_that_would_break_the_catalog(tmp_path: Path) -> None:
    """bump validates the edited text before it writes anything: here a new version whose tag collides."""
    from ci_images.commands import upkeep
    from ci_images.errors import UsageError

    catalog = tmp_path / "images.yaml"
    good = 'registry: r.example.com/ci\nimages:\n  tool:\n    source: docker.io/acme/tool\n    versions: ["1.0.0"]\n'
    catalog.write_text(good, encoding="utf-8")
    upkeep._checked(catalog, good)  # the catalog as it is passes
    broken = good.replace('["1.0.0"]', '["1.0.0", "1.0.0"]')
    with pytest.raises(UsageError) as refused:
        upkeep._checked(catalog, broken)
    assert refused.value.message.startswith(f"{catalog} would not be valid with the new versions: line 5: ")
    assert catalog.read_text(encoding="utf-8") == good
    assert [p.name for p in tmp_path.iterdir()] == ["images.yaml"]  # the candidate file is gone


def test_bump_checks_the_edited_catalog_before_writing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What upstream offers is given here (upstream's tag lists are the lab's business, in test_outdated); the
    edit itself, its check and the write are bump's own. A version that is no tag makes the catalog invalid."""
    from types import SimpleNamespace

    from ci_images.commands import upkeep
    from ci_images.commands.options import BUMP, parse_options
    from ci_images.errors import UsageError

    catalog = tmp_path / "images.yaml"
    good = 'registry: r.example.com/ci\nimages:\n  tool:\n    source: docker.io/acme/tool\n    versions: ["1.0.0"]\n'
    catalog.write_text(good, encoding="utf-8")
    offered = [
        SimpleNamespace(spec=SimpleNamespace(name="tool"), found=SimpleNamespace(newer=("not a tag!",)))
    ]
    monkeypatch.setattr(upkeep, "_findings", lambda options: (catalog, offered))
    with pytest.raises(UsageError, match="would not be valid with the new versions"):
        upkeep.bump(parse_options(BUMP, {"catalog": str(catalog)}, {}))
    assert catalog.read_text(encoding="utf-8") == good
