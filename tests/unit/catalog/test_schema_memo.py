"""A catalog that passed the JSON Schema is not checked again while its bytes, the schema and the validator are the
same: jsonschema, attrs and referencing stay out of the next command's start. A failure is never remembered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci_images.cache import FileMemo
from ci_images.catalog.load import load_catalog
from ci_images.catalog.schema import memo_key
from ci_images.errors import CatalogError

CATALOG = """images:
  app:
    source: docker.io/library/app
    versions: ["1.0"]
    smoke: null
"""

# A fresh interpreter loads the catalog with a memo and says whether jsonschema was imported.
LOAD = """
import json, sys
from pathlib import Path
from ci_images.cache import FileMemo
from ci_images.catalog.load import load_catalog
try:
    load_catalog(sys.argv[1], smoke_kinds=(), memo=FileMemo(Path(sys.argv[2])))
    outcome = "ok"
except Exception as exc:
    outcome = type(exc).__name__
print(json.dumps({"outcome": outcome, "jsonschema": "jsonschema" in sys.modules}))
"""


def _load(catalog: Path, memo: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(catalog), str(memo)], capture_output=True, text=True, check=True
    )
    loaded: dict[str, object] = json.loads(done.stdout)
    return loaded


def test_a_catalog_that_passed_skips_the_schema_pass_next_time(tmp_path: Path) -> None:
    catalog, memo = tmp_path / "images.yaml", tmp_path / "memo"
    catalog.write_text(CATALOG, encoding="utf-8")
    assert _load(catalog, memo) == {"outcome": "ok", "jsonschema": True}
    assert _load(catalog, memo) == {"outcome": "ok", "jsonschema": False}
    catalog.write_text(CATALOG.replace("1.0", "1.1"), encoding="utf-8")  # one byte: checked again
    assert _load(catalog, memo) == {"outcome": "ok", "jsonschema": True}


def test_a_catalog_that_failed_is_checked_every_time(tmp_path: Path) -> None:
    catalog, memo = tmp_path / "images.yaml", tmp_path / "memo"
    catalog.write_text(CATALOG.replace("versions:", "verzions:"), encoding="utf-8")
    for _ in range(2):
        assert _load(catalog, memo) == {"outcome": "CatalogError", "jsonschema": True}
    assert not memo.exists() or not list(memo.iterdir())


def test_the_semantic_checks_still_run_on_a_remembered_catalog(tmp_path: Path) -> None:
    """Only the schema pass is remembered: a probe name no installed plugin knows fails either way."""
    catalog, memo = tmp_path / "images.yaml", FileMemo(tmp_path / "memo")
    catalog.write_text(CATALOG.replace("smoke: null", "smoke: nosuchprobe"), encoding="utf-8")
    for _ in range(2):
        with pytest.raises(CatalogError, match="nosuchprobe"):
            load_catalog(catalog, smoke_kinds=(), memo=memo)
    assert memo_key(catalog.read_bytes()) in memo  # it passed the schema; the probe check failed it


def test_the_memo_keeps_the_newest_keys_and_ignores_what_is_not_a_key(tmp_path: Path) -> None:
    memo = FileMemo(tmp_path / "memo", keep=3)
    keys = [f"{n:064x}" for n in range(5)]
    for key in keys:
        memo.add(key)
    assert len(list((tmp_path / "memo").iterdir())) == 3
    assert keys[-1] in memo
    assert "../etc/passwd" not in memo
    with pytest.raises(ValueError, match="not a memo key"):
        memo.add("../escape")


def test_an_unwritable_memo_remembers_nothing_and_fails_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    memo = FileMemo(blocker / "memo")  # a folder below a file cannot be made
    memo.add("a" * 64)
    assert "a" * 64 not in memo
