"""Reports: JSON records, the lock file, the Markdown summary, GitHub outputs, and redaction everywhere."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from ci_images.errors import UsageError
from ci_images.log import Logger, add_secret
from ci_images.plan.decide import TargetState, decide
from ci_images.report import table as report
from ci_images.report.files import atomic_write
from ci_images.report.lockfile import LOCK_VERSION, update_lock
from ci_images.report.table import markdown_summary, publish_github
from ci_images.run.result import Result
from tests.unit.conftest import EntryFactory


def write_json(path: Path, results: list[Result]) -> None:
    """The records as --json writes them to a file (commands.outcome.emit_json)."""
    atomic_write(path, json.dumps([r.as_record() for r in results], indent=2) + "\n")


D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
SRC = "sha256:" + "5" * 64
REPO = "ghcr.io/acme/ci/local-kms"
RECORD_KEYS = {
    "image",
    "variant",
    "version",
    "action",
    "reason",
    "tags",
    "digest",
    "previous_digest",
    "source_digest",
    "platforms",
    "duration_s",
    "ratelimit_remaining",
    "error",
    "exit_code",
    "copy",
}


def result(
    version: str = "3.12.0",
    *,
    action: str = "built",
    tags: tuple[str, ...] = ("3.12.0", "3.12", "latest"),
    digest: str | None = D1,
    reason: str = "new",
    previous: dict[str, str | None] | None = None,
    variant: str = "plain",
) -> Result:
    return Result(
        image="local-kms",
        variant=variant,
        version=version,
        action=action,
        reason=reason,
        tags=tuple(f"{REPO}:{t}" for t in tags),
        digest=digest,
        source_digest=SRC,
        platforms=("linux/amd64", "linux/arm64"),
        duration_s=12.345,
        ratelimit_remaining=97,
        previous_digests=previous or {},
        source=f"docker.io/nsmithuk/local-kms:{version}",
    )


def github_logger(tmp_path: Path) -> tuple[Logger, io.StringIO, Path, Path]:
    output = tmp_path / "github_output"
    summary = tmp_path / "step_summary"
    output.write_text("earlier=kept\n", encoding="utf-8")
    summary.write_text("## earlier step\n", encoding="utf-8")
    stream = io.StringIO()
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    return Logger(stream=stream, env=env), stream, output, summary


def parse_outputs(text: str) -> dict[str, str]:
    """Read GITHUB_OUTPUT the way the runner does: NAME=VALUE lines and NAME<<DELIMITER heredocs."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            else:
                pytest.fail(f"heredoc {name} is not closed")
            outputs[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def test_record_keys_and_values() -> None:
    record = result(previous={"3.12.0": D2, "3.12": D2, "latest": D3}).as_record()
    assert set(record) >= RECORD_KEYS
    assert record["image"] == "local-kms"
    assert record["tags"] == [f"{REPO}:3.12.0", f"{REPO}:3.12", f"{REPO}:latest"]
    assert record["digest"] == D1
    assert record["previous_digest"] == D2
    assert record["source_digest"] == SRC
    assert record["platforms"] == ["linux/amd64", "linux/arm64"]
    assert record["duration_s"] == 12.345
    assert record["ratelimit_remaining"] == 97
    assert record["previous_digests"][f"{REPO}:latest"] == D3
    assert record["error"] is None and record["exit_code"] is None
    json.dumps(record)  # serialisable as it is
    failed = replace(result(action="failed"), error="boom; fix: retry", exit_code=4).as_record()
    assert (failed["error"], failed["exit_code"]) == ("boom; fix: retry", 4)


def test_a_mirrored_result_records_its_copy_and_is_held_like_a_build(tmp_path: Path) -> None:
    copy = {"exact": False, "digest": D1, "upstream_digest": SRC, "platforms": {"linux/amd64": D2}}
    mirrored = replace(result(action="mirrored", tags=("3.12.0",)), copy=copy, platforms=("linux/amd64",))
    record = mirrored.as_record()
    assert record["copy"] == copy and record["source_digest"] == SRC and record["digest"] == D1
    assert result().as_record()["copy"] is None
    assert report.digests_output([mirrored]) == {f"{REPO}:3.12.0": D1}
    lock = update_lock(tmp_path / "lock.json", [mirrored])["images"][f"{REPO}:3.12.0"]
    assert (lock["digest"], lock["source_digest"], lock["platforms"]) == (D1, SRC, ["linux/amd64"])
    assert "✅ mirrored" in markdown_summary([mirrored], title="t", ratelimit_remaining=None)


def test_previous_digest_is_the_version_tags_not_an_aliases() -> None:
    # A retag moves only stale aliases: the version tag did not move, so there is no previous digest for it.
    retagged = result(action="retagged", previous={"latest": D3})
    assert retagged.previous_digest is None
    assert result(previous={"3.12.0": None, "3.12": D2}).previous_digest is None
    assert result().previous_digest is None


def test_from_decision(make_entry: EntryFactory) -> None:
    entry = make_entry()
    decision = decide(entry, source_digest=SRC, recipe=None, current=TargetState(None))
    planned = Result.from_decision(decision, ratelimit_remaining=5)
    assert planned.action == "planned"
    assert planned.tags == entry.tag_refs
    assert planned.source == "docker.io/nsmithuk/local-kms:3.11.7"
    assert planned.source_digest == SRC
    assert planned.ratelimit_remaining == 5
    assert planned.key == "local-kms/plain/3.11.7"
    assert planned.platforms == tuple(entry.platform_names)  # nothing held yet: what the catalog asks for


def test_an_entry_left_as_it_is_reports_the_platforms_the_target_holds(make_entry: EntryFactory) -> None:
    """A mirror of every platform says "all" in the catalog; the record and the lock file name the real ones."""
    entry = make_entry(mode="mirror", platforms=())
    held = TargetState(
        digest=SRC, tag_digests=dict.fromkeys(entry.tags, SRC), platforms=("linux/arm64", "linux/amd64")
    )
    decision = decide(entry, source_digest=SRC, recipe=None, current=held)
    assert decision.action == "skip"
    assert Result.from_decision(decision).platforms == ("linux/arm64", "linux/amd64")
    assert Result.from_decision(
        decide(entry, source_digest=SRC, recipe=None, current=TargetState(None))
    ).platforms == ("all",)


def test_write_json(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.json"
    write_json(path, [result(), result("3.11.7", action="skipped", tags=("3.11.7", "3.11"))])
    records = json.loads(path.read_text(encoding="utf-8"))
    assert [r["version"] for r in records] == ["3.12.0", "3.11.7"]
    assert all(set(r) >= RECORD_KEYS for r in records)
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary file left behind


def test_update_lock_merges_and_keeps_untouched_tags(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.json"
    lock.write_text(
        json.dumps(
            {
                "version": 1,
                "images": {
                    "ghcr.io/acme/ci/vault:1.14": {"digest": D3, "note": "untouched"},
                    f"{REPO}:latest": {"digest": D3},
                    f"{REPO}:3.11.7": {"digest": D3, "note": "failed this run"},
                },
            }
        ),
        encoding="utf-8",
    )
    written = update_lock(
        lock,
        [
            result(),
            result("3.11.7", action="failed", tags=("3.11.7", "3.11"), digest=D2),
            result("3.10.0", action="planned", tags=("3.10.0",), digest=D2),
            result("3.9.0", action="built", tags=("3.9.0",), digest=None),  # dry run: nothing pushed
        ],
    )
    assert json.loads(lock.read_text(encoding="utf-8")) == written
    images = written["images"]
    assert list(images) == sorted(images)
    assert images["ghcr.io/acme/ci/vault:1.14"] == {"digest": D3, "note": "untouched"}
    assert images[f"{REPO}:3.11.7"] == {"digest": D3, "note": "failed this run"}
    assert images[f"{REPO}:latest"] == {
        "digest": D1,
        "pinned": f"{REPO}@{D1}",
        "source": "docker.io/nsmithuk/local-kms:3.12.0",
        "source_digest": SRC,
        "platforms": ["linux/amd64", "linux/arm64"],
    }
    assert {f"{REPO}:3.12.0", f"{REPO}:3.12"} <= set(images)
    assert f"{REPO}:3.10.0" not in images and f"{REPO}:3.9.0" not in images
    assert written["version"] == LOCK_VERSION


def test_update_lock_keeps_only_the_catalogs_tags_on_this_target(tmp_path: Path) -> None:
    """A version removed from the catalog, or a push to another registry, leaves no stale record behind."""
    lock = tmp_path / "images.lock.json"
    lock.write_text(
        json.dumps(
            {
                "version": 1,
                "images": {
                    f"{REPO}:3.11.7": {"digest": D3, "note": "another entry, not run this time"},
                    f"{REPO}:3.10.0": {"digest": D3, "note": "removed from the catalog"},
                    "127.0.0.1:5999/lab/local-kms:3.12.0": {"digest": D3, "note": "another registry"},
                },
                "signatures": {D3: {"signed_by": [{"key": "sha256:k"}]}},
            }
        ),
        encoding="utf-8",
    )
    catalog_tags = {f"{REPO}:{tag}" for tag in ("3.12.0", "3.12", "latest", "3.11.7")}
    written = update_lock(lock, [result()], catalog_tags=catalog_tags)
    assert set(written["images"]) == catalog_tags
    assert written["images"][f"{REPO}:3.11.7"]["note"] == "another entry, not run this time"
    assert written["signatures"] == {D3: {"signed_by": [{"key": "sha256:k"}]}}  # 3.11.7 still points there


def test_update_lock_starts_a_missing_lock(tmp_path: Path) -> None:
    lock = tmp_path / "images.lock.json"
    written = update_lock(lock, [result(tags=("3.12.0",))])
    assert list(written["images"]) == [f"{REPO}:3.12.0"]


def test_the_lock_file_lists_platforms_sorted_whatever_order_a_run_found_them_in(tmp_path: Path) -> None:
    unsorted = replace(result(tags=("3.12.0",)), platforms=("linux/arm64", "linux/amd64"))
    written = update_lock(tmp_path / "images.lock.json", [unsorted])
    assert written["images"][f"{REPO}:3.12.0"]["platforms"] == ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "1:1: not JSON"),
        ("[1, 2]", "is not a ci-images lock file"),
        ('{"version": 99, "images": {"x": {}}}', "has version 99"),
    ],
)
def test_an_unreadable_lock_is_bad_input_not_silently_replaced(
    tmp_path: Path, content: str, says: str
) -> None:
    lock = tmp_path / "images.lock.json"
    lock.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=re.escape(says)) as raised:
        update_lock(lock, [result(tags=("3.12.0",))])
    assert raised.value.exit_code == 2
    assert lock.read_text(encoding="utf-8") == content  # left as it was


def test_atomic_write_leaves_no_temporary_file_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.mkdir()  # replacing a directory with a file fails
    with pytest.raises(IsADirectoryError):
        atomic_write(target, "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_markdown_summary() -> None:
    text = markdown_summary(
        [
            result(reason="new: a|b\nsecond line"),
            result("3.11.7", action="failed", digest=None, reason="boom"),
            result("3.11.6", action="skipped", reason="up to date"),
        ],
        title="ci-images: push",
        ratelimit_remaining=42,
    )
    lines = text.splitlines()
    assert lines[0] == "### ci-images: push"
    assert lines[2] == "| image | variant | version | action | reason | digest | duration |"
    assert (
        lines[4]
        == "| local-kms | plain | 3.12.0 | ✅ built | new: a\\|b second line | `111111111111` | 12.3s |"
    )
    assert lines[5] == "| local-kms | plain | 3.11.7 | ❌ failed | boom | `-` | 12.3s |"
    assert "⏭️ skipped" in lines[6]
    assert lines[-1] == "Upstream pull quota left: 42"
    assert text.endswith("\n")
    assert "quota" not in markdown_summary([], title="t", ratelimit_remaining=None)


def test_publish_github_appends_outputs_and_summary(tmp_path: Path) -> None:
    logger, _, output, summary = github_logger(tmp_path)
    results = [result(), result("3.11.7", action="failed", digest=None, tags=("3.11.7",))]
    publish_github(results, logger, title="ci-images: push", ratelimit_remaining=3)
    publish_github(results[1:], logger, title="second run", ratelimit_remaining=None)
    text = output.read_text(encoding="utf-8")
    assert text.startswith("earlier=kept\n")
    assert re.search(r"^digests<<(\S+)\n.*\n\1$", text, re.MULTILINE)
    outputs = parse_outputs(text)
    assert outputs["earlier"] == "kept"
    assert outputs["changed"] == "false"  # the second run's value, appended after the first
    assert text.count("changed<<") == 2 and "true" in text
    first_digests = json.loads(text.split("\n")[2])
    assert first_digests == {f"{REPO}:3.12.0": D1, f"{REPO}:3.12": D1, f"{REPO}:latest": D1}
    summary_text = summary.read_text(encoding="utf-8")
    assert summary_text.startswith("## earlier step\n### ci-images: push\n")
    assert "### second run" in summary_text
    assert "Upstream pull quota left: 3" in summary_text


def test_outputs_outside_github_are_not_written(tmp_path: Path) -> None:
    """GITHUB_OUTPUT and GITHUB_STEP_SUMMARY left in the environment outside a GitHub Actions run (a copied env,
    `act`-like tools) are not written to: only GITHUB_ACTIONS=true turns the GitHub face on."""
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    logger = Logger(
        stream=io.StringIO(), env={"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    )
    publish_github([result()], logger, title="t", ratelimit_remaining=None)
    logger.set_output("x", "y")
    logger.step_summary("# z")
    assert not output.exists() and not summary.exists()


def test_print_table_plain(make_entry: EntryFactory) -> None:
    stream = io.StringIO()
    logger = Logger(stream=stream, env={"CI": "true"})
    report.print_table([result(), result("3.11.7", action="skipped")], logger, ratelimit=(7, 100))
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["image", "variant", "version", "action", "reason", "digest", "duration"]
    assert lines[1].split() == ["local-kms", "plain", "3.12.0", "built", "new", "111111111111", "12.3s"]
    assert lines[-1] == "upstream pull quota: 7 of 100 left"


def test_print_table_empty() -> None:
    stream = io.StringIO()
    report.print_table([], Logger(stream=stream, env={"CI": "true"}))
    assert stream.getvalue().split() == [
        "image",
        "variant",
        "version",
        "action",
        "reason",
        "digest",
        "duration",
    ]


def test_a_registered_secret_never_reaches_any_output(tmp_path: Path, secrets: set[str]) -> None:
    secret = "s3cr3t-t0ken-value"
    add_secret(secret)
    leaked = replace(
        result(reason=f"push failed: unauthorized for user:{secret}"),
        error=f"401 with token {secret}",
    )
    logger, stream, output, summary = github_logger(tmp_path)
    json_path = tmp_path / "report.json"
    lock = tmp_path / "images.lock.json"

    report.print_table([leaked], logger)
    plain = io.StringIO()
    report.print_table([leaked], Logger(stream=plain, env={"CI": "true"}))
    logger.error(f"failed: {secret}", title=f"title {secret}")
    logger.warning(f"careful: {secret}")
    with logger.group(f"group {secret}"):
        logger.info(secret)
    publish_github([leaked], logger, title=f"run {secret}", ratelimit_remaining=None)
    logger.set_output("extra", f"value {secret}")
    write_json(json_path, [leaked])
    update_lock(lock, [leaked])

    texts = {
        "stream": stream.getvalue(),
        "plain stream": plain.getvalue(),
        "GITHUB_OUTPUT": output.read_text(encoding="utf-8"),
        "GITHUB_STEP_SUMMARY": summary.read_text(encoding="utf-8"),
        "json": json_path.read_text(encoding="utf-8"),
        "lock": lock.read_text(encoding="utf-8"),
        "record": json.dumps(leaked.as_record()),
        "markdown": markdown_summary([leaked], title=secret, ratelimit_remaining=None),
    }
    for name, text in texts.items():
        assert secret not in text, f"the secret leaked into {name}"
    assert "***" in texts["stream"] and "***" in texts["json"] and "***" in texts["GITHUB_STEP_SUMMARY"]
    # The JSON record carries the error text itself (redacted), not only the short reason.
    assert leaked.as_record()["error"] == "401 with token ***"


def test_short_values_are_not_registered_as_secrets(secrets: set[str]) -> None:
    add_secret("ab")
    add_secret(None)
    add_secret("")
    assert secrets == set()


def test_a_dry_run_or_build_only_changes_nothing_in_the_step_outputs(tmp_path: Path) -> None:
    """`changed` and `digests` speak of the target: a dry run's retag and a build without a push left it as it was."""
    logger, _, output, _ = github_logger(tmp_path)
    dry = [replace(result(action="retagged"), dry_run=True), result("3.11.7", digest=None, tags=("3.11.7",))]
    publish_github(dry, logger, title="dry", ratelimit_remaining=None)
    outputs = parse_outputs(output.read_text(encoding="utf-8"))
    assert (outputs["changed"], json.loads(outputs["digests"])) == ("false", {})
    publish_github([result(action="retagged")], logger, title="real", ratelimit_remaining=None)
    outputs = parse_outputs(output.read_text(encoding="utf-8"))
    assert outputs["changed"] == "true" and json.loads(outputs["digests"])


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_a_new_file_the_umasks_mode_and_keeps_an_old_files(
    tmp_path: Path, umask: int, expected: int
) -> None:
    """The lock file is committed and read by others: not the 0600 of a temporary file."""
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.json", "{}")
        kept = tmp_path / "kept.json"
        kept.write_text("[]", encoding="utf-8")
        kept.chmod(0o640)
        atomic_write(kept, "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == expected
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "{}"


def test_the_lock_file_records_how_each_digest_was_made(tmp_path: Path) -> None:
    """verify-images --rebuild re-assembles the tags recorded as assembled; a result that does not know (an older
    caller) writes no such field rather than a wrong one."""
    lock = tmp_path / "images.lock.json"
    results = [
        replace(result(), built="assembled"),
        replace(result("3.11.7", tags=("3.11.7",), digest=D2), built="engine"),
        result("3.10.0", tags=("3.10.0",), digest=D3),
    ]
    images = update_lock(lock, results)["images"]
    assert {tag: record.get("built") for tag, record in images.items()} == {
        f"{REPO}:3.12.0": "assembled",
        f"{REPO}:3.12": "assembled",
        f"{REPO}:latest": "assembled",
        f"{REPO}:3.11.7": "engine",
        f"{REPO}:3.10.0": None,
    }
