"""ci_images.assemble.shell against BuildKit's own lexer test tables (tests/unit/assemble/data/buildkit, from moby/buildkit)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci_images.assemble.gotypes import go_quote
from ci_images.assemble.shell import ExpansionError, process_word, process_words

DATA = Path(__file__).parent / "data" / "buildkit"


def env_var_cases() -> list[Any]:
    """envVarTest (TestShellParser4EnvVars): platform|source|expected; "error" means the lexer must fail."""
    cases = []
    for number, line in enumerate((DATA / "envVarTest").read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        platform, source, expected = (part.strip() for part in line.split("|"))
        if platform in ("A", "U"):
            cases.append(pytest.param(source, expected, id=f"line{number}"))
    return cases


@pytest.mark.parametrize(("source", "expected"), env_var_cases())
def test_buildkit_env_var_table(source: str, expected: str) -> None:
    env = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
    if expected == "error":
        with pytest.raises(ExpansionError):
            process_word(source, env)
    else:
        assert process_word(source, env) == expected


def words_cases() -> list[Any]:
    """wordsTest (TestShellParser4Words, normal mode): ENV lines add to the env; source|comma-separated words."""
    cases = []
    env: dict[str, str] = {}
    for number, line in enumerate((DATA / "wordsTest").read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env = {**env, key: value}
            continue
        source, expected = line.split("|")
        cases.append(pytest.param(source.strip(), expected.lstrip(" ").split(","), env, id=f"line{number}"))
    return cases


@pytest.mark.parametrize(("source", "expected", "env"), words_cases())
def test_buildkit_words_table(source: str, expected: list[str], env: dict[str, str]) -> None:
    try:
        words = process_words(source, env)
    except ExpansionError:
        words = ["error"]
    assert words == expected


@pytest.mark.parametrize(
    "case",
    json.loads((DATA / "process_with_matches.json").read_text(encoding="utf-8")),
    ids=lambda case: case["input"],
)
def test_buildkit_process_with_matches(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(ExpansionError):
            process_word(case["input"], case["envs"])
    else:
        assert process_word(case["input"], case["envs"]) == case["expected"]


def test_mandatory_variables_carry_their_message() -> None:
    # TestShellParserMandatoryEnvVars
    assert process_word("${VAR:?message here$ARG}", {"VAR": "plain", "ARG": "x"}) == "plain"
    for env in ({"VAR": "", "ARG": "x"}, {"ARG": "x"}):
        with pytest.raises(ExpansionError, match="message herex"):
            process_word("${VAR:?message here$ARG}", env)
    assert process_word("${VAR?message here$ARG}", {"VAR": "", "ARG": "x"}) == ""


def test_the_forms_the_shipped_dockerfiles_use() -> None:
    seed = "${KMS_SEED:+/ci-images/seeds/${KMS_SEED}.yaml}"
    assert process_word(seed, {"KMS_SEED": "sops-test"}) == "/ci-images/seeds/sops-test.yaml"
    assert process_word(seed, {"KMS_SEED": ""}) == ""
    assert process_word(seed, {}) == ""
    assert process_word("${BASE_IMAGE}", {"BASE_IMAGE": "h/r@sha256:00"}) == "h/r@sha256:00"


def test_unset_and_null_differ_without_the_colon() -> None:
    assert process_word("${X-word}|${X:-word}", {"X": ""}) == "|word"
    assert process_word("${X+word}|${X:+word}", {"X": ""}) == "word|"
    assert process_word("${X-word}|${X+word}", {}) == "word|"


def test_the_escape_directive_changes_the_escape_character() -> None:
    assert process_word("`$HOME \\x", {"HOME": "/root"}, escape="`") == "$HOME \\x"
    assert process_word('"a`"b"', {}, escape="`") == 'a"b'


def test_words_after_a_modifier_keep_the_text_before_it() -> None:
    # BuildKit >= dockerfile/1.10 loses "a" here (a shared word buffer); Docker 20.10 and this port keep it.
    assert process_words("a${X:-b}c d", {}) == ["abc", "d"]


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("echo hi", '"echo hi"'),
        ('say "x"\n', '"say \\"x\\"\\n"'),
        ("tab\there", '"tab\\there"'),
        ("\x01é", '"\\x01é"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted
