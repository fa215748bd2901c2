"""The option table's CI modes: --check-public is a mode of `ci` beside --push, --matrix and --lock-only, and like
them excludes the others and the flags of modes that build (--dry-run, --force); `check-public` is the same check
as a command of its own. Both doors are made from the table, so each refuses the same pairs (exit 2). And
verify-images --rebuild: what it takes and what it refuses."""

from __future__ import annotations

import pytest

from ci_images.cli.table import COMMANDS
from ci_images.commands.options import CHECK_PUBLIC, CI, CONFLICTS, OPTIONS, PUSH, VERIFY, parse_options
from ci_images.errors import UsageError
from tests.doors import clean_env, run_door

MODES = ("push", "matrix", "lock-only", "check-public")


def _flag(name: str) -> dict[str, object]:
    return {name.replace("-", "_"): True}


def test_check_public_is_a_ci_mode_and_a_command_of_its_own() -> None:
    (option,) = [o for o in OPTIONS if o.name == "check-public"]
    assert option.commands == {CI} and option.kind == "flag"
    assert parse_options(CI, _flag("check-public"), {}).check_public
    assert not parse_options(CI, {}, {}).check_public
    (command,) = [c for c in COMMANDS if c.name == CHECK_PUBLIC]
    # What the check reads with: the catalog, the entries, the target and its transport, the lock file's digests.
    assert {o.name for o in command.options} == {
        "catalog",
        "images",
        "registry",
        "plain-http",
        "json",
        "lock",
        "registry-timeout",
        "debug",
    }
    with pytest.raises(UsageError, match="push-images takes no option --check-public"):
        parse_options(PUSH, _flag("check-public"), {})


@pytest.mark.parametrize(
    "other", ["push", "matrix", "lock-only", "dry-run", "force"], ids=lambda name: f"--{name}"
)
def test_check_public_excludes_the_other_modes_and_what_only_a_build_takes(other: str) -> None:
    with pytest.raises(UsageError, match=f"--check-public and --{other} cannot be used together") as raised:
        parse_options(CI, {**_flag("check-public"), **_flag(other)}, {})
    assert raised.value.exit_code == 2


def test_every_two_ci_modes_exclude_each_other() -> None:
    pairs = {frozenset(pair) for pair in CONFLICTS[CI]}
    for first in MODES:
        for second in MODES:
            if first != second:
                assert frozenset((first, second)) in pairs, (first, second)


def test_a_mode_set_in_the_environment_does_not_count_as_given() -> None:
    """Only flags on the command line contradict each other: --check-public in a job whose environment asks for
    keyless signing (CI_IMAGES_SIGN_KEYLESS=1, as the publish job's does) is no conflict."""
    options = parse_options(CI, _flag("check-public"), {"CI_IMAGES_SIGN_KEYLESS": "1"})
    assert options.check_public and options.keyless


@pytest.mark.parametrize("kind", ["module", "invoke"])
def test_both_doors_refuse_check_public_with_push(kind: str) -> None:
    done = run_door(kind, ["ci", "--check-public", "--push"], clean_env())
    assert done.returncode == 2, done.stderr
    assert "--check-public and --push cannot be used together" in done.stderr


def test_rebuild_reads_upstream_through_the_mirror_the_environment_names() -> None:
    options = parse_options(VERIFY, {"rebuild": True}, {"CI_IMAGES_UPSTREAM_MIRROR": "127.0.0.1:5001"})
    assert options.rebuild and options.upstream_mirror == "127.0.0.1:5001"


def test_rebuild_checks_digests_not_signatures_so_a_key_is_refused() -> None:
    with pytest.raises(UsageError) as raised:
        parse_options(VERIFY, {"rebuild": True, "key": "cosign.pub"}, {})
    assert "--rebuild and --key cannot be used together" in raised.value.message
