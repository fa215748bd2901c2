"""What the anonymous check reads and how it reports, without a registry: the references of the chosen entries
(every tag, and the digest the lock file pins it to), the per-repository --json records, which answers are findings
about visibility and which stop the check. The reads themselves are tested on real registries
(tests/integration/test_published_visibility.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ci_images.catalog.refs import Repository, parse_repository
from ci_images.errors import RegistryError
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.visibility import (
    MISSING,
    PRIVATE,
    VisibilityProblem,
    anonymous_problems,
    fix_for,
    published_references,
    refusal,
    visibility_records,
)
from tests.unit.conftest import EntryFactory

DIGEST = "sha256:" + "a401b403" * 8  # hex with "401" and "403" inside: no status code


def test_every_tag_and_each_pinned_digest_once(make_entry: EntryFactory) -> None:
    first = make_entry(tags=("1.0.0", "1.0", "latest"))
    second = make_entry(version="0.9.0", tags=("0.9.0",))
    lock = {
        first.target.with_tag("1.0.0"): {"digest": DIGEST},
        first.target.with_tag("1.0"): {"digest": DIGEST},  # the same digest: read once
        first.target.with_tag("latest"): {"digest": "not a digest"},
        second.target.with_tag("0.9.0"): "not a record",
    }
    assert published_references([first, second], lock) == [
        (first.target, "1.0.0"),
        (first.target, "1.0"),
        (first.target, "latest"),
        (first.target, DIGEST),
        (second.target, "0.9.0"),
    ]
    assert published_references([first], {}) == [(first.target, t) for t in ("1.0.0", "1.0", "latest")]


def test_records_name_every_repository_and_its_problem() -> None:
    public, private = parse_repository("ghcr.io/o/r/a"), parse_repository("ghcr.io/o/r/b")
    references = [(public, "1"), (private, "1"), (private, DIGEST)]
    problem = VisibilityProblem(private, PRIVATE, (private.with_tag("1"),), "HEAD ...: 401", "make it public")
    assert visibility_records(references, [problem]) == [
        {"repository": "ghcr.io/o/r/a", "references": ["ghcr.io/o/r/a:1"], "public": True},
        {
            "repository": "ghcr.io/o/r/b",
            "references": ["ghcr.io/o/r/b:1", f"ghcr.io/o/r/b@{DIGEST}"],
            "public": False,
            "problem": PRIVATE,
            "failed": ["ghcr.io/o/r/b:1"],
            "detail": "HEAD ...: 401",
            "fix": "make it public",
        },
    ]
    error = refusal([problem])
    assert error.exit_code == 3
    assert "1 published repository is not readable without credentials" in error.message
    assert (
        "ghcr.io/o/r/b refuses anonymous reads (ghcr.io/o/r/b:1): HEAD ...: 401; fix: make it public"
        in error.message
    )


@dataclass
class Answering:
    """A client stand-in that answers a HEAD as a registry did (a message, or None for 404): what is tested is
    which answers the check counts as findings, not the registry."""

    answer: str | None
    credentials: Credentials | None = None

    def head_manifest(self, repo: str, ref: str) -> object:
        if self.answer is None:
            return None
        raise RegistryError(self.answer)


def _problems(answer: str | None) -> list[VisibilityProblem]:
    repository = Repository("registry.example.com", "team/vault")
    client = Answering(answer)

    def anonymous(host: str) -> RegistryClient:
        return client  # type: ignore[return-value]

    return anonymous_problems([(repository, "1.0"), (repository, DIGEST)], anonymous)


@pytest.mark.parametrize(
    "answer",
    [
        "HEAD https://registry.example.com/v2/team/vault/manifests/1.0: 401 ",
        "token service auth.example.com of registry.example.com (anonymous, repository:team/vault:pull) refused: 403 denied",
    ],
)
def test_a_refusal_is_a_private_repository(answer: str) -> None:
    (problem,) = _problems(answer)
    assert problem.kind == PRIVATE and len(problem.references) == 2
    assert "allow anonymous pulls of registry.example.com/team/vault" in problem.fix


def test_not_found_is_named_as_such() -> None:
    (problem,) = _problems(None)
    assert problem.kind == MISSING and problem.detail == "404 manifest unknown"
    assert "check that the push reached" in problem.fix


@pytest.mark.parametrize(
    "answer",
    [
        f"HEAD https://registry.example.com/v2/team/vault/manifests/{DIGEST}: unexpected 500 ",
        "registry registry.example.com cannot be reached (HEAD ..., 5 attempts): Connection refused",
    ],
)
def test_an_answer_that_says_nothing_of_visibility_stops_the_check(answer: str) -> None:
    with pytest.raises(RegistryError) as raised:
        _problems(answer)
    assert raised.value.message == answer


def test_a_client_with_credentials_is_refused() -> None:
    client = Answering(None, credentials=Credentials("u", "p"))
    with pytest.raises(ValueError, match="with credentials"):
        anonymous_problems([(Repository("r.example.com", "x"), "1")], lambda host: client)  # type: ignore[arg-type,return-value]


def test_outside_ghcr_a_missing_reference_is_not_a_settings_problem() -> None:
    repository = Repository("registry.example.com", "team/vault")
    assert fix_for(repository, MISSING).startswith("check that the push reached")
    assert fix_for(repository, PRIVATE).startswith("allow anonymous pulls")
