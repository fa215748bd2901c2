"""Signing in the lab: generate a key, push with it, verify every tag; check the signatures with openssl and the key
file with the raw primitives (independently of ci_images.sign); tamper with the registry and watch verify-images
name each failure; a wrong password stops the run before any push.

Lean on purpose (2 cores): one image (vault), one platform (linux/amd64), its own repository path on the lab's
target so other modules' pushes never meet these tags.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.secret
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ci_images.commands import images as image_commands
from ci_images.commands import signing
from ci_images.commands.options import PUSH, SIGN, VERIFY, parse_options
from ci_images.errors import SigningError
from ci_images.run.result import Result
from tests.doors import clean_env, run_door

from .conftest import vault_catalog

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PATH = "sign-tests"
PASSWORD = "correct horse 8e1f"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Signed:
    root: Path
    catalog: Path
    lock: Path
    key: Path
    public: Path
    env: dict[str, str]
    first: list[Result]

    @property
    def result(self) -> Result:
        return self.first[0]

    @property
    def digest(self) -> str:
        assert self.result.digest is not None
        return self.result.digest


def _catalog(root: Path, lab: Any) -> Path:
    return vault_catalog(root, f"registry: {lab.target.host}/{PATH}\nupstream_mirror: {lab.upstream.host}\n")


def _options(signed: Signed, command: str, **given: Any) -> Any:
    defaults: dict[str, Any] = {"catalog": str(signed.catalog), "lock": str(signed.lock)}
    return parse_options(command, {**defaults, **given}, signed.env)


class Raw:
    """The target registry through plain `requests`: what a consumer (or an attacker) sees, not our client."""

    def __init__(self, lab: Any) -> None:
        self.base = f"https://{lab.target.host}/v2/{PATH}/vault"
        self.auth = (lab.target.username, lab.target.password)
        self.ca = str(lab.ca_bundle)

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        # verify= per request: REQUESTS_CA_BUNDLE would override a session's.
        return requests.request(method, url, auth=self.auth, verify=self.ca, timeout=30, **kwargs)

    def manifest(self, ref: str) -> tuple[bytes, str] | None:
        accept = f"{OCI_MANIFEST}, {OCI_INDEX}"
        resp = self._call("GET", f"{self.base}/manifests/{ref}", headers={"Accept": accept})
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.content, resp.headers["Content-Type"]

    def put_manifest(self, ref: str, body: bytes, media_type: str) -> None:
        resp = self._call(
            "PUT", f"{self.base}/manifests/{ref}", data=body, headers={"Content-Type": media_type}
        )
        assert resp.status_code == 201, resp.text

    def delete_manifest(self, digest: str) -> None:
        resp = self._call("DELETE", f"{self.base}/manifests/{digest}")
        assert resp.status_code == 202, resp.text

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
        resp = self._call(
            "PUT",
            location,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert resp.status_code == 201, resp.text
        return digest


def _sig_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


@pytest.fixture(scope="module")
def signed(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """generate-key through the door, then one push-images with the key."""
    root = tmp_path_factory.mktemp("sign")
    env = {**lab.env(), "CI": "true", "COSIGN_PASSWORD": PASSWORD}
    env.pop("CI_IMAGES_REGISTRY", None)  # the catalog names the target
    keys_dir = root / "keys"
    made = run_door("module", ["generate-key", "--output", str(keys_dir)], clean_env(**env))
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    catalog = _catalog(root, lab)
    signed = Signed(
        root,
        catalog,
        root / "images.lock.json",
        keys_dir / "cosign.key",
        keys_dir / "cosign.pub",
        {**env, "COSIGN_KEY": str(keys_dir / "cosign.key")},
        [],
    )
    signed.first = image_commands.push_images(_options(signed, PUSH))
    return signed


def test_generate_key_writes_an_encrypted_0600_key_and_refuses_to_overwrite(signed: Signed) -> None:
    assert stat.S_IMODE(signed.key.stat().st_mode) == 0o600
    assert signed.key.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert PASSWORD.encode() not in signed.key.read_bytes()
    before = signed.key.read_bytes()
    again = run_door("module", ["generate-key", "--output", str(signed.key.parent)], clean_env(**signed.env))
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    assert signed.key.read_bytes() == before


def test_push_signs_verifies_and_records_the_signer(signed: Signed) -> None:
    result = signed.result
    assert result.action == "built"
    assert result.signature is not None
    # The index and (by default) its one platform manifest.
    [child] = result.signature.platforms.values()
    assert result.signature.signed == (signed.digest, child) == result.signature.verified
    fingerprint = result.signature.signer
    lock = json.loads(signed.lock.read_text())
    assert lock["signatures"][signed.digest] == {"signed_by": [{"key": fingerprint}]}
    assert lock["signatures"][child] == {"signed_by": [{"key": fingerprint}], "index": signed.digest}
    assert {lock["images"][ref]["digest"] for ref in result.tags} == {signed.digest}
    # The fingerprint is the one openssl computes from cosign.pub.
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(signed.public), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()


def test_openssl_verifies_the_signature_in_the_registry(signed: Signed, lab: Any, tmp_path: Path) -> None:
    """Independent of ci_images.sign: fetch the .sig with plain requests, verify with the openssl CLI."""
    raw = Raw(lab)
    got = raw.manifest(_sig_tag(signed.digest))
    assert got is not None
    manifest = json.loads(got[0])
    assert got[1] == OCI_MANIFEST and manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = raw.blob(layer["digest"])
    config = json.loads(raw.blob(manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert len(config["history"]) == 1
    claim = json.loads(payload)
    assert claim == {
        "critical": {
            "identity": {"docker-reference": f"{lab.target.host}/{PATH}/vault"},
            "image": {"docker-manifest-digest": signed.digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig").write_bytes(
        base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    )
    checked = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(signed.public), "-signature", "sig", "payload"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stdout + checked.stderr
    (tmp_path / "payload").write_bytes(payload.replace(b"sha256:", b"sha256:0"))
    tampered = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(signed.public), "-signature", "sig", "payload"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tampered.returncode != 0  # the check above can fail


def _decrypt_independently(path: Path, password: bytes) -> ec.EllipticCurvePrivateKey:
    """cosign.key read from scratch: PEM -> JSON -> scrypt -> secretbox -> PKCS#8, with the primitives only."""
    lines = path.read_text().strip().splitlines()
    document = json.loads(base64.b64decode("".join(lines[1:-1])))
    params = document["kdf"]["params"]
    box_key = Scrypt(
        salt=base64.b64decode(document["kdf"]["salt"]), length=32, n=params["N"], r=params["r"], p=params["p"]
    ).derive(password)
    der = nacl.secret.SecretBox(box_key).decrypt(
        base64.b64decode(document["ciphertext"]), base64.b64decode(document["cipher"]["nonce"])
    )
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_the_key_file_opens_with_scrypt_and_secretbox_alone(signed: Signed) -> None:
    key = _decrypt_independently(signed.key, PASSWORD.encode())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == signed.public.read_bytes()


def test_verify_images_passes_for_every_tag(signed: Signed, tmp_path: Path) -> None:
    report = tmp_path / "verify.json"
    checks = signing.verify_images(_options(signed, VERIFY, key=str(signed.public), json=str(report)))
    assert {c.ref for c in checks} == set(signed.result.tags)
    assert all(c.ok and c.digest == signed.digest for c in checks)
    records = json.loads(report.read_text())
    assert {r["tag"] for r in records} == set(signed.result.tags)
    assert all(r["ok"] and r["problem"] is None and r["mode"] == "key" for r in records)


def test_verify_images_counts_what_is_not_published_apart(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version in the catalog that was never pushed (and is not locked) passes, but is not called verified."""
    catalog = tmp_path / "images.yaml"
    shutil.copytree(signed.catalog.parent / "images", tmp_path / "images")
    catalog.write_text(
        signed.catalog.read_text().replace('versions: ["2.0.0"]', 'versions: ["2.0.0", "9.9.9"]'),
        encoding="utf-8",
    )
    checks = signing.verify_images(_options(signed, VERIFY, key=str(signed.public), catalog=str(catalog)))
    published = len(signed.result.tags)
    assert [c.ok for c in checks] == [True] * len(checks) and len(checks) > published
    err = capsys.readouterr().err
    assert f"{published} published tags verified, with " in err
    assert f"; {len(checks) - published} not published" in err and "all " not in err.splitlines()[-1]


def test_lock_only_records_who_signed_each_digest(signed: Signed, tmp_path: Path) -> None:
    """The lock job runs after the publish jobs, builds nothing and signs nothing: it reads who signed each digest
    back by verifying it, so a fresh lock file carries the signature records a consumer checks against."""
    fingerprint = signed.result.signature.signer if signed.result.signature else None
    with_key = tmp_path / "with-key.json"
    image_commands.write_lock_only(_options(signed, "ci", lock_only=True, lock=str(with_key)))
    lock = json.loads(with_key.read_text())
    assert {lock["images"][ref]["digest"] for ref in signed.result.tags} == {signed.digest}
    [child] = (signed.result.signature.platforms if signed.result.signature else {}).values()
    assert lock["signatures"] == {
        signed.digest: {"signed_by": [{"key": fingerprint}]},
        child: {"signed_by": [{"key": fingerprint}], "index": signed.digest},
    }
    assert lock["attestations"] == json.loads(signed.lock.read_text())["attestations"]
    # Without a key or --keyless there is nothing to verify with: tags only, as before.
    unsigned = tmp_path / "tags-only.json"
    env = {k: v for k, v in signed.env.items() if k != "COSIGN_KEY"}
    options = parse_options(
        "ci", {"catalog": str(signed.catalog), "lock": str(unsigned), "lock_only": True}, env
    )
    image_commands.write_lock_only(options)
    assert "signatures" not in json.loads(unsigned.read_text())
    assert "attestations" not in json.loads(unsigned.read_text())


def test_second_push_signs_nothing_new(signed: Signed, lab: Any) -> None:
    before = len(lab.target.requests())
    again = image_commands.push_images(_options(signed, PUSH))
    assert [r.action for r in again] == ["skipped"]
    assert again[0].signature is not None and again[0].signature.signed == ()
    writes = [(m, u) for m, u in lab.target.requests()[before:] if m in {"PUT", "POST", "PATCH", "DELETE"}]
    assert writes == []


# ---- tampering: each case makes verify-images fail with its own message -------------------------------------


@pytest.fixture
def restore(signed: Signed, lab: Any) -> Iterator[Raw]:
    """Put the .sig and every tag back as push-images left them, whatever the test did."""
    raw = Raw(lab)
    saved_sig = raw.manifest(_sig_tag(signed.digest))
    saved_index = raw.manifest(signed.result.tags[0].rsplit(":", 1)[1])
    assert saved_sig is not None and saved_index is not None
    yield raw
    raw.put_manifest(_sig_tag(signed.digest), *saved_sig)
    for ref in signed.result.tags:
        raw.put_manifest(ref.rsplit(":", 1)[1], *saved_index)


def _verify_fails(signed: Signed, *, fix: str = "sign what is yours") -> str:
    with pytest.raises(SigningError) as caught:
        signing.verify_images(_options(signed, VERIFY, key=str(signed.public)))
    assert caught.value.exit_code == 9
    assert fix in (caught.value.fix or "")
    return caught.value.message


def _replace_layer(
    raw: Raw, signed: Signed, *, payload: bytes | None = None, annotations: dict[str, str]
) -> None:
    got = raw.manifest(_sig_tag(signed.digest))
    assert got is not None
    manifest = json.loads(got[0])
    layer = manifest["layers"][0]
    if payload is not None:
        layer["digest"], layer["size"] = raw.put_blob(payload), len(payload)
    layer["annotations"] = annotations
    raw.put_manifest(_sig_tag(signed.digest), json.dumps(manifest).encode(), OCI_MANIFEST)


def _layer(raw: Raw, signed: Signed) -> tuple[dict[str, str], bytes]:
    got = raw.manifest(_sig_tag(signed.digest))
    assert got is not None
    layer = json.loads(got[0])["layers"][0]
    return dict(layer["annotations"]), raw.blob(layer["digest"])


def test_payload_edited(signed: Signed, restore: Raw) -> None:
    annotations, payload = _layer(restore, signed)
    other = "sha256:" + "0" * 64
    _replace_layer(
        restore,
        signed,
        payload=payload.replace(signed.digest.encode(), other.encode()),
        annotations=annotations,
    )
    assert f"payload edited: it names {other}" in _verify_fails(signed)


def test_our_signature_for_another_repository_is_not_accepted_here(signed: Signed, restore: Raw) -> None:
    """A replay: a valid signature by our own key over a payload naming the same digest in another repository."""
    annotations, payload = _layer(restore, signed)
    claimed = json.loads(payload)["critical"]["identity"]["docker-reference"]
    elsewhere = claimed.rsplit("/", 1)[0] + "/other"
    replayed = payload.replace(f'"{claimed}"'.encode(), f'"{elsewhere}"'.encode())
    assert replayed != payload
    key = _decrypt_independently(signed.key, PASSWORD.encode())
    signature = base64.b64encode(key.sign(replayed, ec.ECDSA(hashes.SHA256()))).decode()
    _replace_layer(
        restore,
        signed,
        payload=replayed,
        annotations={**annotations, "dev.cosignproject.cosign/signature": signature},
    )
    message = _verify_fails(signed)
    assert f"signed for repository {elsewhere}, not {claimed}" in message


def test_signature_from_another_key(signed: Signed, restore: Raw) -> None:
    _, payload = _layer(restore, signed)
    stranger = ec.generate_private_key(ec.SECP256R1())
    signature = base64.b64encode(stranger.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    # As cosign writes a layer: the signature annotation only.
    _replace_layer(restore, signed, annotations={"dev.cosignproject.cosign/signature": signature})
    assert "wrong key: signed by another key" in _verify_fails(signed)


def test_signature_edited(signed: Signed, restore: Raw) -> None:
    annotations, _ = _layer(restore, signed)
    key = _decrypt_independently(signed.key, PASSWORD.encode())
    # A well-formed signature by the right key, over other bytes: only the annotation changed.
    forged = base64.b64encode(key.sign(b"something else", ec.ECDSA(hashes.SHA256()))).decode()
    _replace_layer(restore, signed, annotations={**annotations, "dev.cosignproject.cosign/signature": forged})
    assert "signature edited: the layer says key" in _verify_fails(signed)


def test_tag_moved_to_an_unsigned_digest(signed: Signed, restore: Raw) -> None:
    got = restore.manifest(signed.digest)
    assert got is not None
    # The index with an annotation more: a digest nobody signed (its platform manifest is signed, as pushed).
    index = json.loads(got[0])
    index["annotations"] = {**index.get("annotations", {}), "org.example.moved": "yes"}
    body, media_type = json.dumps(index).encode(), got[1]
    child = "sha256:" + hashlib.sha256(body).hexdigest()
    version_tag = signed.result.tags[0]
    restore.put_manifest(version_tag.rsplit(":", 1)[1], body, media_type)
    message = _verify_fails(signed, fix="find out who moved these tags before signing anything")
    assert f"{version_tag}: tag moved to an unsigned digest: it points to {child}" in message
    assert message.count("tag moved") == 1  # the other tags still pass


def test_signature_tag_deleted_then_sign_images_signs_again(signed: Signed, lab: Any) -> None:
    raw = Raw(lab)
    got = raw.manifest(_sig_tag(signed.digest))
    assert got is not None
    raw.delete_manifest("sha256:" + hashlib.sha256(got[0]).hexdigest())
    # Through the door, as a user runs it: exit 9, one message naming the failure, no traceback.
    env = clean_env(**signed.env)
    failed = run_door(
        "module",
        [
            "verify-images",
            "--catalog",
            str(signed.catalog),
            "--lock",
            str(signed.lock),
            "--key",
            str(signed.public),
        ],
        env,
    )
    assert failed.returncode == 9, failed.stderr
    assert f"missing: no signature for {signed.digest}" in failed.stderr
    assert "Traceback" not in failed.stderr
    records = signing.sign_images(_options(signed, SIGN))
    assert [r["signed"] for r in records] == [[signed.digest]]
    assert all(c.ok for c in signing.verify_images(_options(signed, VERIFY, key=str(signed.public))))
    assert signing.sign_images(_options(signed, SIGN))[0]["signed"] == []  # signed already: nothing new


def test_each_platform_manifest_is_signed_unless_index_only(signed: Signed, lab: Any) -> None:
    raw = Raw(lab)
    [record] = signing.sign_images(_options(signed, SIGN))
    assert list(record["platforms"]) == ["linux/amd64"]
    child = record["platforms"]["linux/amd64"]
    assert record["signed"] == []  # push-images signed the index and its platform manifest already
    saved = raw.manifest(_sig_tag(child))
    assert saved is not None
    raw.delete_manifest("sha256:" + hashlib.sha256(saved[0]).hexdigest())
    [index_only] = signing.sign_images(_options(signed, SIGN, index_only=True))
    assert index_only["signed"] == [] and index_only["platforms"] == {}
    assert raw.manifest(_sig_tag(child)) is None
    [again] = signing.sign_images(_options(signed, SIGN))
    assert again["signed"] == [child]
    lock = json.loads(signed.lock.read_text())
    assert lock["signatures"][child]["index"] == signed.digest


def test_wrong_password_stops_before_any_push(signed: Signed, lab: Any) -> None:
    before = len(lab.target.requests())
    wrong = "wrong-password-5d1c"
    env = clean_env(**{**signed.env, "COSIGN_PASSWORD": wrong})
    run = run_door(
        "module",
        ["push-images", "--catalog", str(signed.catalog), "--lock", str(signed.lock), "--force"],
        env,
    )
    assert run.returncode == 2, run.stderr
    assert "wrong COSIGN_PASSWORD" in run.stderr
    assert "Traceback" not in run.stderr
    assert wrong not in run.stdout + run.stderr
    assert lab.target.requests()[before:] == []  # not even a HEAD: nothing was planned, nothing pushed
