"""ci_images.assemble.dockerfile: BuildKit's parser, instruction lines, and why a Dockerfile needs the engine."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from ci_images.assemble.dockerfile import (
    DockerfileError,
    classify,
    classify_path,
    parse_dockerfile,
    read_dockerfile,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
HEAD = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"


def verdict(text: str, context: Path, **build_args: str) -> str | None:
    return classify(
        parse_dockerfile(text, path="ctx/Dockerfile"), context, {"BASE_IMAGE": "b", **build_args}
    ).reason


def test_instructions_keep_their_lines_flags_and_forms() -> None:
    parsed = read_dockerfile(
        REPO_ROOT / "images" / "local-kms" / "Dockerfile", display="images/local-kms/Dockerfile"
    )
    assert [(i.keyword, i.line) for i in parsed.instructions] == [
        ("ARG", 4),
        ("FROM", 5),
        ("ARG", 11),
        ("COPY", 12),
        ("ENV", 13),
        ("EXPOSE", 15),
        ("HEALTHCHECK", 20),
    ]
    health = parsed.instructions[-1]
    assert (health.end_line, health.flags[0], health.args[0]) == (22, "--interval=10s", "CMD")
    assert parsed.path == "images/local-kms/Dockerfile"
    assert parse_dockerfile('FROM x\nCMD ["a", "b"]\n').instructions[1].json


def test_the_escape_directive_is_read() -> None:
    parsed = parse_dockerfile("# syntax=docker/dockerfile:1\n# escape=`\nFROM x\nCOPY a `\n  b\n")
    assert (parsed.escape, parsed.syntax) == ("`", "docker/dockerfile:1")
    assert parsed.instructions[1].args == ("a", "b")
    # A directive after the first instruction or comment line is an ordinary comment.
    assert parse_dockerfile("# hello\n# escape=`\nFROM x\n").escape == "\\"


@pytest.mark.parametrize("name", ["local-kms", "vault"])
def test_the_shipped_dockerfiles_are_assemblable(name: str) -> None:
    context = REPO_ROOT / "images" / name
    for args in ({"BASE_IMAGE": "b"}, {"BASE_IMAGE": "b", "KMS_SEED": "sops-test"}):
        assert classify_path(context / "Dockerfile", context, args).assemblable


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (HEAD + "RUN echo hi\n", "ctx/Dockerfile:3: RUN runs a command in a container"),
        (HEAD + "COPY a /a\nFROM other\n", "ctx/Dockerfile:4: FROM starts a second stage"),
        (HEAD + "COPY --from=build /a /a\n", "ctx/Dockerfile:3: COPY copies from another stage or image"),
        (
            HEAD + "ADD https://example.com/x.tgz /x\n",
            "ctx/Dockerfile:3: ADD downloads a URL (https://example.com/x.tgz)",
        ),
        (HEAD + "ADD git@github.com:o/r.git /src\n", "ctx/Dockerfile:3: ADD clones a git repository"),
        (HEAD + "COPY <<EOF /x\nhi\nEOF\n", "ctx/Dockerfile:3: COPY uses a heredoc"),
        (HEAD + "ONBUILD COPY a /a\n", "ctx/Dockerfile:3: ONBUILD adds a build trigger"),
        (
            HEAD + "COPY --chown=app:app a /a\n",
            "ctx/Dockerfile:3: COPY --chown=app:app names a user or group",
        ),
        (
            HEAD + "ARG WHO=app\nCOPY --chown=$WHO a /a\n",
            "ctx/Dockerfile:4: COPY --chown=app names a user or group",
        ),
        (HEAD + "COPY --chmod=u+x a /a\n", "ctx/Dockerfile:3: COPY --chmod=u+x is not an octal mode"),
        (HEAD + "COPY --parents a /a\n", "ctx/Dockerfile:3: COPY keeps source parents"),
        ("FROM --platform=linux/arm64 x\n", "ctx/Dockerfile:1: FROM picks a platform in FROM"),
        ("# syntax=example.com/frontend\nFROM x\n", "ctx/Dockerfile:1: names another Dockerfile frontend"),
        (HEAD + "ARG SRC=https://example.com/x\nADD $SRC /x\n", "ctx/Dockerfile:4: ADD downloads a URL"),
    ],
)
def test_reasons_name_the_file_line_and_instruction(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "a").write_text("a\n", encoding="utf-8")
    got = verdict(text, tmp_path)
    assert got is not None and got.startswith(reason), got


def test_add_of_a_local_archive_needs_the_engine_and_add_of_a_plain_file_does_not(tmp_path: Path) -> None:
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("inside.txt")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "files.tar.gz").write_bytes(gzip.compress(payload.getvalue()))
    (tmp_path / "files.tar").write_bytes(payload.getvalue())
    (tmp_path / "data.gz").write_bytes(gzip.compress(b"not a tar " * 100))
    (tmp_path / "plain.txt").write_text("plain\n", encoding="utf-8")
    for name in ("files.tar.gz", "files.tar"):
        reason = verdict(HEAD + f"ADD {name} /opt/\n", tmp_path)
        assert reason == (
            f"ctx/Dockerfile:3: ADD adds a local archive, {name}, which Docker extracts; COPY copies it as a file"
        )
    assert (
        verdict(HEAD + "ADD files.tar* /opt/\n", tmp_path) is not None
    )  # a wildcard's matches are checked too
    assert verdict(HEAD + "ADD data.gz plain.txt /opt/\n", tmp_path) is None
    assert verdict(HEAD + "COPY files.tar.gz /opt/\n", tmp_path) is None  # COPY never extracts


def test_the_base_s_onbuild_triggers_need_the_engine(tmp_path: Path) -> None:
    parsed = parse_dockerfile(HEAD + "ENV A=1\n", path="ctx/Dockerfile")
    base = {"config": {"OnBuild": ["RUN make"]}}
    reason = classify(parsed, tmp_path, {"BASE_IMAGE": "b"}, base_config=base).reason
    assert reason == "ctx/Dockerfile:2: FROM names a base with 1 ONBUILD trigger(s), which run at build time"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENV A=1\nFROM x\n", "ctx/Dockerfile:1: ENV before FROM"),
        ("ARG A\n", "ctx/Dockerfile: no FROM instruction"),
        (HEAD + "COPY --chwon=1 a /a\n", "ctx/Dockerfile:3: COPY has an unknown flag: --chwon"),
        (HEAD + "COPY --chown a /a\n", "ctx/Dockerfile:3: COPY is missing a value on flag: --chown"),
        (
            HEAD + "HEALTHCHECK --interval=5 CMD true\n",
            "ctx/Dockerfile:3: HEALTHCHECK: --interval: time: missing unit",
        ),
        (HEAD + "STOPSIGNAL SIGNOPE\n", "ctx/Dockerfile:3: STOPSIGNAL: Invalid signal: SIGNOPE"),
        (HEAD + "COPY https://example.com/x /x\n", "ctx/Dockerfile:3: COPY: source can't be a URL for COPY"),
        (HEAD + "ENV A=${B\n", "ctx/Dockerfile:3: ENV: failed to process \"${B\": syntax error: missing '}'"),
        (
            HEAD + "SHELL /bin/bash -c\n",
            "ctx/Dockerfile:3: SHELL: SHELL requires the arguments to be in JSON form",
        ),
        ("FROM ${NOTHING}\n", "ctx/Dockerfile:1: base name (${NOTHING}) should not be blank"),
    ],
)
def test_what_the_engine_would_refuse_is_an_error_with_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(DockerfileError) as caught:
        verdict(text, tmp_path)
    assert caught.value.message.startswith(message), caught.value.message
