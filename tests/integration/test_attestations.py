"""push-images with a key attests what it publishes, and verify-images checks it, in the lab.

One push of a small catalog, both platforms: vault 1.10.0 assembled from the official image (its Dockerfile adds no layer)
and the byte-for-byte mirror of that same upstream image, so the two share their SBOMs (the same layers). Then:
every digest carries a provenance and an SBOM that verify-images accepts and openssl verifies; the provenance
validates against the in-toto and SLSA schemas; a no-change run writes nothing and makes no upstream manifest GET;
the lock-only job records the same attestations; a single-platform pull finds a signature under a sigstoreSigned
policy; and the issue's four tamper cases each end verify-images (through its door) with exit 9 and their own message.
Smoke tests are off: they are not what this module tests (2 cores).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from referencing import Registry, Resource

from ci_images.commands import images as image_commands
from ci_images.commands.options import PUSH, VERIFY, parse_options
from ci_images.commands.signing import verify_images
from ci_images.run.result import Result
from ci_images.sign import dsse, keys, provenance
from ci_images.sign import statement as statements
from tests.doors import clean_env, run_door

from .conftest import REPO_ROOT, unavailable

pytestmark = pytest.mark.integration

PATH = "attest-tests"
PASSWORD = "attest 51c9"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMAS = REPO_ROOT / "tests" / "schemas"
CATALOG = """\
platforms: [linux/amd64, linux/arm64]
images:
  vault:
    source: docker.io/hashicorp/vault
    versions:
      - version: "1.10.0"
        source: docker.io/library/vault
    build: images/vault
    smoke: null
  vault-upstream:
    source: docker.io/library/vault
    target: mirror/library/vault
    versions: ["1.10.0"]
    platforms: all
    tags: ["{version}"]
    smoke: null
"""


class Raw:
    """The target registry through plain `requests`: what a consumer (or an attacker with push rights) sees."""

    def __init__(self, lab: Any, repository: str) -> None:
        self.base = f"https://{lab.target.host}/v2/{PATH}/{repository}"
        self.auth = (lab.target.username, lab.target.password)
        self.ca = str(lab.ca_bundle)

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, url, auth=self.auth, verify=self.ca, timeout=30, **kwargs)

    def manifest(self, ref: str) -> tuple[bytes, str]:
        accept = f"{OCI_MANIFEST}, {OCI_INDEX}"
        resp = self._call("GET", f"{self.base}/manifests/{ref}", headers={"Accept": accept})
        resp.raise_for_status()
        return resp.content, resp.headers["Content-Type"]

    def put_manifest(self, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> None:
        resp = self._call(
            "PUT", f"{self.base}/manifests/{ref}", data=body, headers={"Content-Type": media_type}
        )
        assert resp.status_code == 201, resp.text

    def blob(self, digest: str) -> bytes:
        resp = self._call("GET", f"{self.base}/blobs/{digest}")
        resp.raise_for_status()
        assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == digest
        return resp.content

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = self._call("POST", f"{self.base}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        resp = self._call("PUT", location, params={"digest": digest}, data=data)
        assert resp.status_code == 201, resp.text
        return digest


def att_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".att"


@dataclass
class Pushed:
    root: Path
    catalog: Path
    lock: Path
    key: keys.SigningKey
    public: Path
    env: dict[str, str]
    results: list[Result]

    def result(self, image: str) -> Result:
        return next(r for r in self.results if r.image == image)

    def options(self, command: str, **given: Any) -> Any:
        defaults = {"catalog": str(self.catalog), "lock": str(self.lock)}
        return parse_options(command, {**defaults, **given}, self.env)


@pytest.fixture(scope="module")
def pushed(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    root = tmp_path_factory.mktemp("attest")
    shutil.copytree(REPO_ROOT / "images" / "vault", root / "images" / "vault")
    catalog = root / "images.yaml"
    catalog.write_text(
        f"registry: {lab.target.host}/{PATH}\nupstream_mirror: {lab.upstream.host}\n" + CATALOG,
        encoding="utf-8",
    )
    env = {**lab.env(), "CI": "true", "COSIGN_PASSWORD": PASSWORD}
    env.pop("CI_IMAGES_REGISTRY", None)
    made = run_door("module", ["generate-key", "--output", str(root / "keys")], clean_env(**env))
    assert made.returncode == 0, made.stderr
    env["COSIGN_KEY"] = str(root / "keys" / "cosign.key")
    key = keys.load_signing_key(env["COSIGN_KEY"], env)
    done = Pushed(root, catalog, root / "images.lock.json", key, root / "keys" / "cosign.pub", env, [])
    done.results = image_commands.push_images(done.options(PUSH, json=str(root / "push.json")))
    assert [r.action for r in done.results] == ["built", "mirrored"], [r.reason for r in done.results]
    return done


def _digests(result: Result, raw: Raw) -> dict[str, str]:
    """platform -> manifest digest of what ``result`` published."""
    assert result.digest is not None
    index = json.loads(raw.manifest(result.digest)[0])
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}


def _statements(raw: Raw, digest: str) -> list[tuple[dict[str, Any], dict[str, Any], bytes]]:
    """(layer descriptor, envelope, statement bytes) of every attestation under ``digest``'s .att tag."""
    manifest = json.loads(raw.manifest(att_tag(digest))[0])
    found = []
    for layer in manifest["layers"]:
        envelope = json.loads(raw.blob(layer["digest"]))
        found.append((layer, envelope, base64.b64decode(envelope["payload"])))
    return found


# ---- what one push leaves -----------------------------------------------------------------------------------------


def test_every_digest_has_a_provenance_and_an_sbom(pushed: Pushed, lab: Any) -> None:
    # vault's Dockerfile has no RUN: it is assembled as registry documents, and its provenance says so.
    assert pushed.result("vault").built == "assembled"
    for image, repository, build_type in (
        ("vault", "vault", provenance.ASSEMBLE_TYPE),
        ("vault-upstream", "mirror/library/vault", provenance.MIRROR_TYPE),
    ):
        result = pushed.result(image)
        raw = Raw(lab, repository)
        platforms = _digests(result, raw)
        assert set(platforms) == {"linux/amd64", "linux/arm64"}
        assert result.digest is not None
        for digest in [result.digest, *platforms.values()]:
            found = _statements(raw, digest)
            kinds = sorted(layer["annotations"]["predicateType"] for layer, _, _ in found)
            # The index: its provenance and one SBOM per platform; a platform: its provenance and its SBOM.
            sboms = 2 if digest == result.digest else 1
            assert kinds == [statements.SLSA_PROVENANCE_V1] + [statements.SPDX_DOCUMENT] * sboms, digest
            for _, _, body in found:
                claim = json.loads(body)
                assert claim["subject"] == [
                    {"name": f"{lab.target.host}/{PATH}/{repository}", "digest": {"sha256": digest[7:]}}
                ]
                if claim["predicateType"] == statements.SLSA_PROVENANCE_V1:
                    predicate = claim["predicate"]
                    assert provenance.build_type(predicate) == build_type
                    assert provenance.upstream_digest(predicate) == result.source_digest
                    covered = (
                        set(platforms)
                        if digest == result.digest
                        else {p for p, d in platforms.items() if d == digest}
                    )
                    assert set(provenance.base_digests(predicate)) == covered
        assert {o.digest for o in result.attestations} == {result.digest, *platforms.values()}
        assert all(o.written for o in result.attestations)


def test_the_mirror_and_the_build_share_their_sboms(pushed: Pushed, lab: Any) -> None:
    """vault's Dockerfile adds no layer: each platform of the build has the mirror's files, so one syft scan serves
    both and the documents are the same."""
    built, mirrored = Raw(lab, "vault"), Raw(lab, "mirror/library/vault")
    built_platforms = _digests(pushed.result("vault"), built)
    mirror_platforms = _digests(pushed.result("vault-upstream"), mirrored)
    for platform in ("linux/amd64", "linux/arm64"):
        assert built_platforms[platform] != mirror_platforms[platform]
        documents = []
        for raw, digest in ((built, built_platforms[platform]), (mirrored, mirror_platforms[platform])):
            [spdx] = [
                json.loads(b)
                for layer, _, b in _statements(raw, digest)
                if "spdx" in layer["annotations"]["predicateType"]
            ]
            documents.append(spdx["predicate"])
        assert documents[0] == documents[1]
        assert documents[0]["packages"], "syft found the stand-in's Go modules"


def test_the_provenance_validates_against_the_in_toto_and_slsa_schemas(pushed: Pushed, lab: Any) -> None:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in SCHEMAS.glob("*.schema.json")]
    registry: Registry[Any] = Registry().with_resources([(str(r.contents["$id"]), r) for r in resources])
    by_id = {r.contents["$id"].rsplit("/", 1)[-1]: r.contents for r in resources}
    raw = Raw(lab, "vault")
    digest = pushed.result("vault").digest
    assert digest is not None
    [(_, _, body)] = [
        s
        for s in _statements(raw, digest)
        if s[0]["annotations"]["predicateType"] == statements.SLSA_PROVENANCE_V1
    ]
    document = json.loads(body)
    statement_schema = next(v for k, v in by_id.items() if "statement" in k)
    provenance_schema = next(v for k, v in by_id.items() if "provenance" in k)
    jsonschema.validate(document, statement_schema, registry=registry)
    jsonschema.validate(document["predicate"], provenance_schema, registry=registry)
    dependencies = {d["name"] for d in document["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert dependencies == {"upstream", "base", "dockerfile", "context", "catalog-repository"}
    assert document["predicate"]["buildDefinition"]["externalParameters"]["catalog"] == "images.yaml"


def test_openssl_verifies_an_attestation_from_the_registry(pushed: Pushed, lab: Any, tmp_path: Path) -> None:
    """Independent of ci_images.sign: the envelope read with plain requests, its PAE checked by the openssl CLI."""
    raw = Raw(lab, "mirror/library/vault")
    digest = _digests(pushed.result("vault-upstream"), raw)["linux/arm64"]
    for layer, envelope, body in _statements(raw, digest):
        kind = envelope["payloadType"].encode()
        (tmp_path / "pae").write_bytes(b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body))
        (tmp_path / "sig").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
        verified = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", str(pushed.public), "-signature", "sig", "pae"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0 and "Verified OK" in verified.stdout, layer
        assert (
            layer["mediaType"] == dsse.ENVELOPE_MEDIA_TYPE
            and envelope["payloadType"] == dsse.IN_TOTO_PAYLOAD_TYPE
        )


def test_verify_images_checks_platform_signatures_and_attestations(pushed: Pushed, tmp_path: Path) -> None:
    report = tmp_path / "verify.json"
    checks = verify_images(pushed.options(VERIFY, key=str(pushed.public), json=str(report)))
    assert checks and all(c.ok for c in checks), [c.message for c in checks if not c.ok]
    records = json.loads(report.read_text())
    for record in records:
        kinds = sorted((c["platform"] or "index", c["check"]) for c in record["checks"])
        assert kinds == [
            ("index", "provenance"),
            ("index", "sbom"),
            ("linux/amd64", "provenance"),
            ("linux/amd64", "sbom"),
            ("linux/amd64", "signature"),
            ("linux/arm64", "provenance"),
            ("linux/arm64", "sbom"),
            ("linux/arm64", "signature"),
        ], record["tag"]
        assert all(c["ok"] and c["signer"] == pushed.key.fingerprint for c in record["checks"])


def test_the_lock_file_records_each_digests_attestations(pushed: Pushed, tmp_path: Path) -> None:
    lock = json.loads(pushed.lock.read_text())
    for result in pushed.results:
        for outcome in result.attestations:
            record = lock["attestations"][outcome.digest]
            assert outcome.lock_record() in record["statements"]
            assert record.get("index") == (None if outcome.digest == result.digest else result.digest)
    # The lock job (after parallel pushes) reads the same back from the registry.
    again = tmp_path / "lock-only.json"
    image_commands.write_lock_only(pushed.options("ci", lock_only=True, lock=str(again)))
    assert json.loads(again.read_text())["attestations"] == lock["attestations"]


def test_a_no_change_run_writes_nothing_and_pulls_nothing(pushed: Pushed, lab: Any) -> None:
    target, upstream = len(lab.target.requests()), len(lab.upstream.requests())
    again = image_commands.push_images(pushed.options(PUSH))
    assert [r.action for r in again] == ["skipped", "skipped"]
    writes = [(m, u) for m, u in lab.target.requests()[target:] if m in {"PUT", "POST", "PATCH", "DELETE"}]
    assert writes == []
    gets = [u for m, u in lab.upstream.requests()[upstream:] if m == "GET" and "/manifests/" in u]
    assert gets == []


def test_a_single_platform_pull_finds_its_signature(pushed: Pushed, lab: Any, tmp_path: Path) -> None:
    """podman's and CRI-O's check (containers/image, sigstoreSigned with use-sigstore-attachments): a pull of the
    host's platform resolves the index to that platform's manifest, which push-images now signs too. Debian's
    skopeo 1.9 is built without sigstore: it stops with "sigstore disabled" once it has found the signature, where an
    unsigned platform makes it say "A signature was required, but no signature exists" (test_attest.py shows both)."""
    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed")
    scope = f"{lab.target.host}/{PATH}/vault"
    policy = tmp_path / "policy.json"
    rule = {
        "type": "sigstoreSigned",
        "keyPath": str(pushed.public),
        "signedIdentity": {"type": "matchRepository"},
    }
    policy.write_text(
        json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {scope: [rule]}}})
    )
    registries = tmp_path / "registries.d"
    registries.mkdir()
    (registries / "lab.yaml").write_text(
        f"docker:\n  {lab.target.host}:\n    use-sigstore-attachments: true\n"
    )
    pulled = subprocess.run(
        ["skopeo", "--policy", str(policy), "--registries.d", str(registries), "copy", "--src-creds",
         f"{lab.target.username}:{lab.target.password}", f"docker://{scope}:1.10.0", f"dir:{tmp_path / 'pulled'}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert "no signature exists" not in pulled.stderr
    assert pulled.returncode == 0 or "sigstore disabled" in pulled.stderr, pulled.stderr


# ---- tampering: each of the four cases ends verify-images with exit 9 and its own message ----------------


@pytest.fixture
def amd64(pushed: Pushed, lab: Any) -> Iterator[tuple[Raw, str, bytes]]:
    """(registry, amd64 manifest digest of the built vault, its .att manifest): put back afterwards."""
    raw = Raw(lab, "vault")
    digest = _digests(pushed.result("vault"), raw)["linux/amd64"]
    saved, _ = raw.manifest(att_tag(digest))
    yield raw, digest, saved
    raw.put_manifest(att_tag(digest), saved)


def _with_provenance(raw: Raw, digest: str, saved: bytes, envelope: bytes, signer: str | None = None) -> None:
    """``digest``'s .att tag with ``envelope`` in place of its provenance layer (the SBOM left as it was)."""
    manifest = json.loads(saved)
    for layer in manifest["layers"]:
        if layer["annotations"]["predicateType"] == statements.SLSA_PROVENANCE_V1:
            layer["digest"], layer["size"] = raw.put_blob(envelope), len(envelope)
            if signer is not None:
                layer["annotations"]["io.github.ci-images.signer"] = signer
    raw.put_manifest(att_tag(digest), json.dumps(manifest).encode())


def _provenance_statement(raw: Raw, digest: str) -> tuple[dict[str, Any], bytes]:
    [(_, envelope, body)] = [
        s
        for s in _statements(raw, digest)
        if s[0]["annotations"]["predicateType"] == statements.SLSA_PROVENANCE_V1
    ]
    return envelope, body


def _verify_fails(pushed: Pushed) -> str:
    """verify-images through its door, as a user runs it: exit 9, no traceback; its standard error."""
    run = run_door(
        "module",
        [
            "verify-images",
            "--catalog",
            str(pushed.catalog),
            "--lock",
            str(pushed.lock),
            "--key",
            str(pushed.public),
        ],
        clean_env(**pushed.env),
        timeout=300,
    )
    assert run.returncode == 9, run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr


def test_tampered_an_edited_statement(pushed: Pushed, amd64: tuple[Raw, str, bytes]) -> None:
    raw, digest, saved = amd64
    envelope, body = _provenance_statement(raw, digest)
    statement = json.loads(body)
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://example.invalid/someone-else"
    envelope["payload"] = base64.b64encode(statements.encode(statement)).decode()  # the signature kept
    _with_provenance(raw, digest, saved, json.dumps(envelope).encode())
    err = _verify_fails(pushed)
    assert "linux/amd64 provenance: edited: layer" in err
    assert "says key" in err and "its signature does not verify over it" in err


def test_tampered_signed_by_another_key(pushed: Pushed, amd64: tuple[Raw, str, bytes]) -> None:
    raw, digest, saved = amd64
    _, body = _provenance_statement(raw, digest)
    stranger = keys.SigningKey(keys.generate_private_key())
    _with_provenance(raw, digest, saved, dsse.sign(stranger, body).to_json(), signer=stranger.fingerprint)
    err = _verify_fails(pushed)
    assert f"linux/amd64 provenance: wrong key: signed by {stranger.fingerprint[7:19]}" in err


def test_tampered_moved_from_another_digest(pushed: Pushed, amd64: tuple[Raw, str, bytes]) -> None:
    raw, digest, _ = amd64
    arm64 = _digests(pushed.result("vault"), raw)["linux/arm64"]
    raw.put_manifest(att_tag(digest), raw.manifest(att_tag(arm64))[0])
    err = _verify_fails(pushed)
    assert f"linux/amd64 provenance: wrong subject: the {statements.SLSA_PROVENANCE_V1} attestation" in err
    assert f"is about {arm64}, not {digest}" in err


def test_tampered_provenance_naming_another_base(pushed: Pushed, amd64: tuple[Raw, str, bytes]) -> None:
    """Signed by our own key (a replayed or mistaken provenance): the signature holds, the base does not."""
    raw, digest, saved = amd64
    _, body = _provenance_statement(raw, digest)
    statement = json.loads(body)
    other = "9" * 64
    statement["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] = other
    resigned = dsse.sign(pushed.key, statements.encode(statement)).to_json()
    _with_provenance(raw, digest, saved, resigned, signer=pushed.key.fingerprint)
    err = _verify_fails(pushed)
    expected = pushed.result("vault").source_digest
    assert (
        f"linux/amd64 provenance: wrong base: the provenance names upstream sha256:{other}, not {expected}"
        in err
    )
