"""The shape of the package, kept: no function in src/ longer than 80 lines (ruff's C901 keeps their branches few),
and tests that follow the package layout: tests/unit/PACKAGE/ for each package's tests, tests/unit/test_MODULE.py
for a top-level module's."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "ci_images"
UNIT = ROOT / "tests" / "unit"
MAX_FUNCTION_LINES = 80
# Test modules that test no module of the package: the GitHub workflows (and how GitHub runs them), the pull
# request script in .ci/, and this file.
NOT_A_MODULE = {
    "test_workflows.py",
    "test_github_behaviour.py",
    "test_open_pull_request.py",
    "test_layout.py",
}


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than MAX_FUNCTION_LINES, decorators and docstring included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.name, length))
    return found


def test_the_check_sees_a_long_function() -> None:
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def short():\n    pass\n\n\ndef long():\n{body}\n") == [("long", 81)]


def test_no_function_in_src_is_longer_than_80_lines() -> None:
    too_long = {
        f"{path.relative_to(ROOT)}:{name}": lines
        for path in SRC.rglob("*.py")
        for name, lines in long_functions(path.read_text(encoding="utf-8"))
    }
    assert too_long == {}


def test_unit_tests_follow_the_package_layout() -> None:
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}
    folders = {p.name for p in UNIT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= packages, f"test folders naming no package: {sorted(folders - packages)}"
    for folder in folders:
        assert (UNIT / folder / "__init__.py").is_file(), folder
    stray = {
        p.name for p in UNIT.glob("test_*.py") if p.name not in NOT_A_MODULE and p.stem[5:] not in modules
    }
    assert stray == set(), f"top-level test modules naming no top-level module: {sorted(stray)}"
