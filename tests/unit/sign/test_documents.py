"""cosign's signature documents (payload, .sig manifest and config), keyless command lines, and how verification
names what is wrong with a layer. Pure: no registry."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ci_images.catalog.refs import parse_repository
from ci_images.errors import SigningError, UsageError
from ci_images.oci import OCI_MANIFEST, go_json, sha256_digest
from ci_images.registry.auth import Credentials
from ci_images.sign import keyless, keys
from ci_images.sign import payload as documents
from ci_images.sign.verify import PAYLOAD_EDITED, SIGNATURE_EDITED, WRONG_KEY, _diagnose

DIGEST = "sha256:" + "ab" * 32


def test_payload_bytes_match_cosigns() -> None:
    """The vector from sigstore/cosign pkg/cosign/obsolete_test.go (what `cosign sign` signs)."""
    digest = "sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec"
    expected = (
        b'{"critical":{"identity":{"docker-reference":"index.docker.io/namespace/image"},"image":'
        b'{"docker-manifest-digest":"sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    reference = documents.docker_reference(parse_repository("docker.io/namespace/image"))
    assert reference == "index.docker.io/namespace/image"
    assert documents.payload(reference, digest) == expected


def test_payload_with_annotations_sorts_them_and_escapes_like_go() -> None:
    body = documents.payload("ghcr.io/o/r", DIGEST, {"z": "1", "a": "<&>"})
    assert body.endswith(b'"optional":{"a":"\\u003c\\u0026\\u003e","z":"1"}}')
    assert json.loads(body)["optional"] == {"a": "<&>", "z": "1"}


def test_docker_reference_is_the_repository_without_tag_or_digest() -> None:
    assert (
        documents.docker_reference(parse_repository("ghcr.io/getsops/ci/vault")) == "ghcr.io/getsops/ci/vault"
    )
    assert documents.docker_reference(parse_repository("127.0.0.1:5000/a/b")) == "127.0.0.1:5000/a/b"


def test_signature_tag() -> None:
    assert documents.signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"


def test_first_signature_image_is_gcrs_empty_image_plus_one_layer() -> None:
    body = documents.payload("ghcr.io/o/r", DIGEST)
    layer = documents.new_layer(body, "c2ln", signer="sha256:fp")
    config = go_json(documents.append_to_config(documents.empty_config(), layer))
    assert config == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        b'"os":"","rootfs":{"type":"layers","diff_ids":["' + layer.digest.encode() + b'"]},"config":{}}'
    )
    manifest = documents.signature_manifest(config, [layer])
    assert manifest == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
        b'{"mediaType":"application/vnd.oci.image.config.v1+json","size":'
        + str(len(config)).encode()
        + b',"digest":"'
        + sha256_digest(config).encode()
        + b'"},"layers":[{"mediaType":'
        b'"application/vnd.dev.cosign.simplesigning.v1+json","size":'
        + str(len(body)).encode()
        + b',"digest":"'
        + sha256_digest(body).encode()
        + b'","annotations":'
        b'{"dev.cosignproject.cosign/signature":"c2ln","io.github.ci-images.signer":"sha256:fp"}}]}'
    )
    assert layer.digest == sha256_digest(body) and layer.size == len(body)


def test_appending_keeps_what_is_there_and_adds_one_history_entry_and_diff_id() -> None:
    first = documents.new_layer(b"one", "AAAA")
    second = documents.new_layer(b"two", "BBBB")
    written_by_cosign = {
        "architecture": "",
        "created": "2024-01-01T00:00:00Z",
        "history": [{"created": "2024-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [first.digest]},
        "config": {},
    }
    config = documents.append_to_config(written_by_cosign, second)
    assert list(config) == list(written_by_cosign)
    assert config["history"] == [{"created": "2024-01-01T00:00:00Z"}, {"created": "0001-01-01T00:00:00Z"}]
    assert config["rootfs"]["diff_ids"] == [first.digest, second.digest]
    base = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {},
        "layers": [],
        "annotations": {"x": "y"},
    }
    manifest = json.loads(documents.signature_manifest(b"{}", [first, second], base=base))
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers", "annotations"]
    assert [layer["digest"] for layer in manifest["layers"]] == [first.digest, second.digest]
    assert documents.read_layers(manifest) == [first, second]


# ---- verification's diagnosis -----------------------------------------------------------------------------------


def _signed_layer(key_fingerprint: str | None, body: bytes, signature: bytes) -> documents.Layer:
    return documents.new_layer(body, base64.b64encode(signature).decode(), signer=key_fingerprint)


@pytest.fixture(scope="module")
def ours() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())


def test_each_failure_has_its_own_diagnosis(ours: keys.SigningKey) -> None:
    reference = "ghcr.io/o/r"
    good = documents.payload(reference, DIGEST)
    other = keys.SigningKey(keys.generate_private_key())
    fp = ours.fingerprint

    def diagnose(layer: documents.Layer, body: bytes) -> tuple[str, str]:
        return _diagnose(layer, body, good, reference, DIGEST, fp)

    # Another key signed the right payload.
    assert diagnose(_signed_layer(other.fingerprint, good, other.sign(good)), good)[0] == WRONG_KEY
    assert diagnose(_signed_layer(None, good, other.sign(good)), good)[0] == WRONG_KEY
    # Our layer, payload untouched, signature replaced by another valid one (or garbage): edited.
    assert diagnose(_signed_layer(fp, good, ours.sign(b"something else")), good)[0] == SIGNATURE_EDITED
    garbage = documents.new_layer(good, "bm90IGEgc2lnbmF0dXJl", signer=fp)
    assert diagnose(garbage, good) == (
        SIGNATURE_EDITED,
        "signature edited: the annotation is not a base64 DER ECDSA signature",
    )
    # Payload edited: names another digest, another repository, is no payload, or only its bytes changed.
    layer = _signed_layer(fp, good, ours.sign(good))
    assert diagnose(layer, documents.payload(reference, "sha256:" + "cd" * 32))[1].startswith(
        "payload edited: it names sha256:cdcd"
    )
    assert diagnose(layer, documents.payload("ghcr.io/o/other", DIGEST)) == (
        PAYLOAD_EDITED,
        "payload edited: it names repository ghcr.io/o/other, not ghcr.io/o/r",
    )
    assert diagnose(layer, b"[]")[0] == PAYLOAD_EDITED
    assert diagnose(layer, good.replace(b'"optional":null', b'"optional":{"x":"y"}'))[1].startswith(
        "payload edited: its bytes"
    )


# ---- keyless: the exact command lines and how cosign is started ----------------------------------------------------


def test_keyless_command_lines() -> None:
    image = "ghcr.io/getsops/ci-container-images/vault@" + DIGEST
    assert keyless.sign_argv(image) == ["cosign", "sign", "--yes", image]
    policy = keyless.publishing_policy("getsops/ci-container-images")
    assert keyless.verify_argv(image, policy) == [
        "cosign",
        "verify",
        "--certificate-identity",
        "https://github.com/getsops/ci-container-images/.github/workflows/ci-images.yml@refs/heads/main",
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        image,
    ]
    reusable = keyless.reusable_policy("getsops/ci-container-images", "someorg/app")
    assert keyless.verify_argv(image, reusable) == [
        "cosign",
        "verify",
        "--certificate-identity-regexp",
        r"^https://github\.com/getsops/ci-container-images/\.github/workflows/build-images\.yml@",
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        "--certificate-github-workflow-repository",
        "someorg/app",
        image,
    ]
    with pytest.raises(UsageError, match="by tag"):
        keyless.sign_argv("ghcr.io/o/r:1.0")


def test_workflow_identity_is_the_certificates_san() -> None:
    env = {
        "GITHUB_WORKFLOW_REF": "getsops/ci-container-images/.github/workflows/ci-images.yml@refs/heads/main"
    }
    assert keyless.workflow_identity(env) == (
        "https://github.com/getsops/ci-container-images/.github/workflows/ci-images.yml@refs/heads/main"
    )
    assert keyless.workflow_identity({}) is None


def test_keyless_needs_cosign_and_the_oidc_token(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cosign CLI"):
        keyless.check_can_sign({"PATH": str(tmp_path)})
    _fake_cosign(tmp_path, "exit 0")
    with pytest.raises(UsageError, match="id-token: write"):
        keyless.check_can_sign({"PATH": str(tmp_path)})
    keyless.check_can_sign(
        {"PATH": str(tmp_path), "ACTIONS_ID_TOKEN_REQUEST_URL": "u", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t"}
    )


def _fake_cosign(folder: Path, body: str) -> Path:
    """A stand-in `cosign` on PATH that records how it was started: this tests OUR side of the call (argv, env,
    credentials file), not cosign, which cannot run offline."""
    script = folder / "cosign"
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_cosign_runs_through_proc_with_a_private_docker_config(tmp_path: Path) -> None:
    record = tmp_path / "record"
    _fake_cosign(
        tmp_path,
        f'printf "%s\\n" "$@" > {record}; cat "$DOCKER_CONFIG/config.json" >> {record}; echo >> {record}; '
        f'stat -c %a "$DOCKER_CONFIG/config.json" >> {record}; echo "$DOCKER_CONFIG" >> {record}',
    )
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    image = "ghcr.io/o/r@" + DIGEST
    code, _ = keyless.run_cosign(
        keyless.sign_argv(image), env, host="ghcr.io", credentials=Credentials("actor", "tok-123")
    )
    assert code == 0
    lines = record.read_text().splitlines()
    assert lines[:3] == ["sign", "--yes", image]
    auth = base64.b64encode(b"actor:tok-123").decode()
    assert json.loads(lines[3]) == {"auths": {"ghcr.io": {"auth": auth}}}
    assert lines[4] == "600"
    assert not Path(lines[5]).exists()  # removed once cosign is done


def test_a_failing_cosign_is_a_signing_error(tmp_path: Path) -> None:
    _fake_cosign(tmp_path, 'echo "error: no token" >&2; exit 1')
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    with pytest.raises(SigningError, match="no token") as caught:
        keyless.run_cosign(keyless.sign_argv("r@" + DIGEST), env, host="h", credentials=None)
    assert caught.value.exit_code == 9


def test_keyless_signer_signs_only_what_its_workflows_have_not_signed(tmp_path: Path) -> None:
    """Our orchestration around cosign (verify first, sign, verify again), with a stand-in cosign that "signs" by
    leaving a marker per image and "verifies" by finding it."""
    from ci_images.registry.client import RegistryClient
    from ci_images.sign.signer import KeylessSigner

    calls = tmp_path / "calls"
    _fake_cosign(
        tmp_path,
        f'echo "$1 $(echo "$@" | tr -c "a-z0-9\\n" _)" >> {calls}\n'
        f'marker={tmp_path}/signed-$(echo "$*" | sed "s/.*@//")\n'
        'if [ "$1" = sign ]; then touch "$marker"; exit 0; fi\n'
        '[ -e "$marker" ] || { echo "error: no matching signatures" >&2; exit 1; }',
    )
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    repository = parse_repository("ghcr.io/getsops/ci-container-images/vault")
    policy = keyless.publishing_policy("getsops/ci-container-images")
    signer = KeylessSigner(env, identity="https://github.com/x", policy=policy)
    client = RegistryClient("ghcr.io")
    first = signer.sign(client, repository, DIGEST)
    assert first.signed == (DIGEST,) and first.mode == "keyless"
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["verify", "sign", "verify"]
    again = signer.sign(client, repository, DIGEST)
    assert again.signed == ()
    assert [line.split()[0] for line in calls.read_text().splitlines()][3:] == ["verify"]
    other = "sha256:" + "cd" * 32
    verdict = signer.verify(client, repository, other)
    assert verdict.problem == "keyless" and "no matching signatures" in verdict.message


def test_keyless_verification_names_the_identity_in_the_certificate(tmp_path: Path) -> None:
    """What the lock file records for a legacy keyless signature is the identity cosign found in the certificate,
    read from the JSON line `cosign verify` prints (a stand-in cosign prints one as cosign does)."""
    from ci_images.registry.client import RegistryClient
    from ci_images.sign.signer import KeylessSigner

    subject = "https://github.com/getsops/ci-container-images/.github/workflows/build-images.yml@v1"
    line = json.dumps([{"critical": {}, "optional": {"Issuer": keyless.GITHUB_ISSUER, "Subject": subject}}])
    _fake_cosign(tmp_path, f"echo 'Verification for ... --' >&2; echo '{line}'")
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    policy = keyless.reusable_policy("getsops/ci-container-images", "someorg/app")
    verifier = KeylessSigner(env, identity=str(policy), policy=policy)
    verdict = verifier.verify(RegistryClient("ghcr.io"), parse_repository("ghcr.io/o/r/vault"), DIGEST)
    assert verdict.ok and verdict.signer == subject
    assert keyless.certificate_identity("no json here\n[not json") is None
