"""The in-toto statement and SLSA provenance: as cosign attest writes them, valid against the in-toto and SLSA
schemas (tests/schemas), with the ids, digests and package URLs they carry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from ci_images.catalog.refs import Repository
from ci_images.sign import attest, provenance
from ci_images.sign import statement as statements
from tests.unit.sign.attestation_inputs import (
    BASES,
    CHECKOUT,
    DIGEST,
    ENTRY,
    RECIPE,
    REPOSITORY,
    RUN,
    UPSTREAM,
    build_predicate,
    mirror_predicate,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _validator(name: str) -> jsonschema.protocols.Validator:
    resources = {
        path.name: Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))
        for path in SCHEMAS.glob("*.schema.json")
    }
    registry: Registry[Any] = Registry().with_resources(
        [(str(r.contents["$id"]), r) for r in resources.values()]
    )
    schema = resources[name].contents
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=registry)


@pytest.mark.parametrize("predicate", [build_predicate(), mirror_predicate()], ids=["build", "mirror"])
def test_statement_and_provenance_validate_against_the_schemas(predicate: dict[str, Any]) -> None:
    document = json.loads(
        attest.statement_bytes(REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1, predicate)
    )
    _validator("in-toto-statement-v1.schema.json").validate(document)
    _validator("slsa-provenance-v1.schema.json").validate(document["predicate"])


def test_the_schemas_catch_what_they_should() -> None:
    statement = _validator("in-toto-statement-v1.schema.json")
    good = statements.statement("r", DIGEST, statements.SLSA_PROVENANCE_V1, build_predicate())
    for broken in (
        {**good, "_type": "https://in-toto.io/Statement/v2"},
        {**good, "subject": []},
        {**good, "subject": [{"name": "r"}]},
        {**good, "subject": [{"name": "r", "digest": {"sha256": "ABC"}}]},
    ):
        assert not statement.is_valid(broken)
    predicate = _validator("slsa-provenance-v1.schema.json")
    assert not predicate.is_valid(
        {"buildDefinition": {"buildType": "x:y"}, "runDetails": {"builder": {"id": "a:b"}}}
    )
    run_details = build_predicate()["runDetails"]
    assert not predicate.is_valid(
        {**build_predicate(), "runDetails": {**run_details, "metadata": {"startedOn": "yesterday"}}}
    )


def test_statement_is_what_cosign_attest_makes_and_reads() -> None:
    """cosign parses statements with protojson: only the Statement's and ResourceDescriptor's own fields."""
    document = json.loads(attest.statement_bytes(REPOSITORY, DIGEST, statements.SPDX_DOCUMENT, {"x": 1}))
    assert list(document) == ["_type", "subject", "predicateType", "predicate"]
    assert document["subject"] == [
        {"name": "ghcr.io/getsops/ci-container-images/vault", "digest": {"sha256": "ab" * 32}}
    ]
    hub = attest.statement_bytes(Repository("docker.io", "library/vault"), DIGEST, "x:y", {})
    assert json.loads(hub)["subject"][0]["name"] == "index.docker.io/library/vault"
    claim = statements.read(attest.statement_bytes(REPOSITORY, DIGEST, statements.SPDX_DOCUMENT, {"x": 1}))
    assert claim is not None and claim.names_digest(DIGEST) and claim.predicate == {"x": 1}
    assert statements.COSIGN_TYPES[statements.SLSA_PROVENANCE_V1] == "slsaprovenance1"


def test_build_provenance_records_entry_upstream_recipe_and_commit() -> None:
    predicate = build_predicate()
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["buildType"].endswith("/v1")
    assert definition["externalParameters"] == {
        "catalog": "images.yaml",
        "entry": {
            "image": "vault",
            "variant": "default",
            "version": "2.0.0",
            "source": "docker.io/hashicorp/vault:2.0.0",
            "platforms": ["linux/amd64", "linux/arm64"],
            "tags": list(ENTRY.tags),
            "buildArgs": {"A": "1", "B": "2"},
        },
    }
    names = [d["name"] for d in definition["resolvedDependencies"]]
    assert names == ["upstream", "base", "base", "dockerfile", "context", "catalog-repository"]
    upstream, amd64 = definition["resolvedDependencies"][:2]
    assert upstream == {
        "name": "upstream",
        "uri": "pkg:docker/hashicorp/vault@2.0.0",
        "digest": {"sha256": "11" * 32},
    }
    assert amd64["uri"] == "pkg:docker/hashicorp/vault@2.0.0?platform=linux%2Famd64"
    assert definition["resolvedDependencies"][-1] == {
        "name": "catalog-repository",
        "uri": "git+https://github.com/getsops/ci-container-images",
        "digest": {"gitCommit": "c" * 40},
    }
    assert definition["resolvedDependencies"][3]["uri"] == (
        "git+https://github.com/getsops/ci-container-images@" + "c" * 40 + "#images/vault/Dockerfile"
    )
    assert predicate["runDetails"] == {
        "builder": {"id": RUN.builder_id},
        "metadata": {
            "invocationId": RUN.invocation_id,
            "startedOn": RUN.started_on,
            "finishedOn": RUN.finished_on,
        },
    }
    assert provenance.upstream_digest(predicate) == UPSTREAM
    assert provenance.base_digests(predicate) == BASES


def test_a_mirror_says_it_was_copied_not_built() -> None:
    predicate = mirror_predicate()
    assert provenance.build_type(predicate) == provenance.MIRROR_TYPE != provenance.BUILD_TYPE
    names = {d["name"] for d in predicate["buildDefinition"]["resolvedDependencies"]}
    assert names == {"upstream", "base", "catalog-repository"}
    assert provenance.upstream_digest(predicate) == UPSTREAM


def test_image_purls() -> None:
    assert provenance.image_purl("docker.io/library/vault", "1.10.0") == "pkg:docker/vault@1.10.0"
    assert provenance.image_purl("ghcr.io/o/r", "1", "linux/arm64") == (
        "pkg:docker/o/r@1?repository_url=ghcr.io&platform=linux%2Farm64"
    )


def test_context_dirhash_is_in_totos_coreutils_recipe(tmp_path: Path) -> None:
    """digest_set.md's dirHash, computed by the shell command it gives."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "sub" / "b.sh").write_text("echo b\n")
    (tmp_path / ".hidden").write_text("h\n")
    (tmp_path / "Z").write_text("upper sorts first in C\n")
    (tmp_path / "link").symlink_to(tmp_path / "Dockerfile")
    shell = subprocess.run(
        [
            "sh",
            "-c",
            "find . -type f | cut -c3- | LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -f1 -d' '",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert provenance.context_dirhash(tmp_path) == shell.stdout.strip()


def test_builder_and_invocation_ids() -> None:
    actions = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "getsops/ci-container-images",
        "GITHUB_WORKFLOW_REF": "getsops/ci-container-images/.github/workflows/publish.yml@refs/heads/main",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    assert provenance.builder_id(actions) == (
        "https://github.com/getsops/ci-container-images/.github/workflows/publish.yml@refs/heads/main"
    )
    assert provenance.invocation_id(actions) == (
        "https://github.com/getsops/ci-container-images/actions/runs/42/attempts/2"
    )
    reusable = {**actions, "CI_IMAGES_SIGN_REPOSITORY": "getsops/ci-images"}
    assert provenance.builder_id(reusable) == "https://github.com/getsops/ci-images/.github/workflows"
    assert provenance.builder_id({}) == provenance.LOCAL_BUILDER
    assert provenance.invocation_id({}).startswith("urn:uuid:")
    assert provenance.invocation_id({}) != provenance.invocation_id({})


def test_an_assembled_image_says_so() -> None:
    assembled = provenance.build_predicate(
        ENTRY,
        provenance.Upstream(UPSTREAM, BASES),
        RECIPE,
        CHECKOUT,
        RUN,
        build_type=provenance.ASSEMBLE_TYPE,
    )
    assert provenance.build_type(assembled) == provenance.ASSEMBLE_TYPE
    assert (
        provenance.ASSEMBLE_TYPE.endswith("/assemble/v1")
        and provenance.ASSEMBLE_TYPE != provenance.BUILD_TYPE
    )
    assert (
        assembled["buildDefinition"]["resolvedDependencies"]
        == build_predicate()["buildDefinition"]["resolvedDependencies"]
    )
