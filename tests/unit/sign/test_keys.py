"""cosign's key files: what we write decrypts (with the primitives directly), what cosign wrote decrypts with ours,
wrong passwords and damaged files are bad input (exit 2) that never show the password."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import nacl.secret
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ci_images.errors import UsageError
from ci_images.sign import keys

# A key cosign itself wrote (sigstore/cosign pkg/cosign/keys_test.go, `pemsigstorekey`, password "hello",
# scrypt N=32768): reading it proves we read cosign's files, not only our own.
COSIGN_WRITTEN = b"""-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjozMjc2OCwiciI6
OCwicCI6MX0sInNhbHQiOiI3T3VGd2VsbWZZNXVId2NoaURSc210anNwZ2ZlZjFG
Mk5lOGFDTjVLYVpZPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJQNHk4OGhCb3ZTa09MbXN0bFVBaGJwdDJ0K2xTNUxQSCJ9LCJj
aXBoZXJ0ZXh0IjoiMnB1QzdyZldJOWh3bnJlQ2s4aUZDRlVwQlRrSzRJNlIvbFBF
cnBDekpXUGpJWXl4eGVIL1A2VW52cFJHdVhla1NNb3JMdGhLamdoQ1JlNy82NDVH
QWtoVm1LRC92eEF0S2EvbE1abENSQ3FlekJGUFd1dzNpeFRtZ2xhb2J1ZFVSbUVs
bmNGOGlZbzBTMVl6Y1ZOMVFwY2J2c0dNcUlYRzVlbmdteGp5dCtBcXlyZTF0Q0Y0
V01tU1BlaEljNlBqd2h1Q2xHaVpJUWRvTGc9PSJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
"""
# The legacy label cosign still reads (keys_test.go `pemcosignkey`, password "hello"; its comment there says RSA,
# but the key inside is P-256).
COSIGN_LEGACY = b"""-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjozMjc2OCwiciI6
OCwicCI6MX0sInNhbHQiOiJ4WWdoc09JTUxUWGNOT0RsclNIOUNKc1FlOVFnZmN1
cmUrMXlLdHh1TlkwPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiI0cS9PSlVmaXJkSUkrUjZ0ajZBMmcyQ0JqL25xdFNicCJ9LCJj
aXBoZXJ0ZXh0IjoiKzB4Q3NzcFN0WStBczdKanJpOWtsbHBWd2JhcUI4ZWJNdWto
eS9aVE1MSXRsL3B1YS9jWVJvbytLRGxMWWdmOW1kSjk4K1FnQW9oTktoYnJPMTcw
MHdBY1JTMjFDOE4zQUNJRUVZaWpOMllBNnMraGJSbkhjUnd4eGhDMDFtb2FvL0dO
Y1pmbEJheXZMV3pXblo4d2NDZ2ZpT1o1VXlRTEFJMHh0dnR6dEh3cTdDV1Vhd3V4
RlhlNDZzck9TUE9SNHN6bytabWErUGovSFE9PSJ9
-----END ENCRYPTED COSIGN PRIVATE KEY-----
"""


def _body(pem: bytes) -> dict[str, Any]:
    lines = pem.decode().strip().splitlines()
    document: dict[str, Any] = json.loads(base64.b64decode("".join(lines[1:-1])))
    return document


def test_written_key_is_cosigns_layout_and_opens_with_scrypt_and_secretbox_directly() -> None:
    key = keys.generate_private_key()
    pem = keys.encrypt_private_key(key, b"s3cret pass")
    lines = pem.decode().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64  # Go's pem line length
    document = _body(pem)
    # Field order as Go's encoding/json writes encrypted.go's structs, the same as the file cosign wrote.
    assert list(document) == list(_body(COSIGN_WRITTEN)) == ["kdf", "cipher", "ciphertext"]
    assert document["kdf"] == {
        "name": "scrypt",
        "params": {"N": 65536, "r": 8, "p": 1},
        "salt": document["kdf"]["salt"],
    }
    assert json.dumps(document["kdf"]).startswith('{"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}')
    salt = base64.b64decode(document["kdf"]["salt"], validate=True)
    nonce = base64.b64decode(document["cipher"]["nonce"], validate=True)
    assert (len(salt), len(nonce)) == (32, 24)
    assert document["cipher"]["name"] == "nacl/secretbox"
    box_key = Scrypt(salt=salt, length=32, n=65536, r=8, p=1).derive(b"s3cret pass")
    der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(document["ciphertext"]), nonce)
    assert der == key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("password", [b"", b"hello", "pässwörd ☃".encode()])
def test_round_trip(password: bytes) -> None:
    key = keys.generate_private_key()
    again = keys.decrypt_private_key(keys.encrypt_private_key(key, password), password)
    assert again.private_numbers() == key.private_numbers()


@pytest.mark.parametrize("n", [32768, 131072])
def test_every_strength_cosign_reads_is_read(n: int) -> None:
    key = keys.generate_private_key()
    assert keys.decrypt_private_key(keys.encrypt_private_key(key, b"pw", n=n), b"pw").private_numbers() == (
        key.private_numbers()
    )


def test_reads_the_key_cosign_wrote() -> None:
    key = keys.decrypt_private_key(COSIGN_WRITTEN, b"hello")
    assert isinstance(key.curve, ec.SECP256R1)
    signature = keys.sign_bytes(key, b"payload")
    assert keys.verify_bytes(key.public_key(), b"payload", signature)


def test_reads_the_legacy_label() -> None:
    assert isinstance(keys.decrypt_private_key(COSIGN_LEGACY, b"hello").curve, ec.SECP256R1)


def test_refuses_a_key_that_is_not_p256() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(UsageError, match="not an ECDSA P-256 key"):
        keys.decrypt_private_key(keys.encrypt_private_key(p384, b"pw"), b"pw")


def test_wrong_password_is_bad_input_without_the_password() -> None:
    with pytest.raises(UsageError) as caught:
        keys.decrypt_private_key(COSIGN_WRITTEN, b"not-hello-at-all")
    assert caught.value.exit_code == 2
    assert "wrong COSIGN_PASSWORD" in caught.value.render()
    assert "not-hello-at-all" not in caught.value.render()


def _rewrite(pem: bytes, change: dict[str, object]) -> bytes:
    document = _body(pem)
    document["kdf"]["params"].update(change)
    return keys._pem(keys.PEM_TYPE, json.dumps(document).encode())


@pytest.mark.parametrize("change", [{"N": 1 << 20}, {"N": 16384}, {"r": 16}, {"p": 2}])
def test_scrypt_parameters_cosign_refuses_are_refused(change: dict[str, object]) -> None:
    """A tampered N could make a key file cost gigabytes of memory: only cosign's three parameter sets are read."""
    pem = _rewrite(keys.encrypt_private_key(keys.generate_private_key(), b"pw"), change)
    with pytest.raises(UsageError, match="scrypt parameters"):
        keys.decrypt_private_key(pem, b"pw")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a key", "no PEM block"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a cosign key"),
        (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n", "no END line"),
        (keys._pem(keys.PEM_TYPE, b"{}"), "damaged"),
    ],
)
def test_damaged_files_are_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        keys.decrypt_private_key(data, b"pw")


def test_public_key_and_fingerprint() -> None:
    key = keys.generate_private_key()
    pem = keys.public_key_pem(key.public_key())
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert keys.load_public_key(pem, where="x").public_numbers() == key.public_key().public_numbers()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib

    assert keys.fingerprint(key.public_key()) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_key_ref_env_scheme_reads_the_variable_and_masks_it(secrets: set[str]) -> None:
    pem = COSIGN_WRITTEN.decode()
    assert keys.read_key_ref("env://MY_KEY", {"MY_KEY": pem}, what="COSIGN_KEY") == COSIGN_WRITTEN
    assert pem in secrets
    assert all(line in secrets for line in pem.splitlines() if not line.startswith("-----"))
    with pytest.raises(UsageError, match=r"\$MISSING is not set"):
        keys.read_key_ref("env://MISSING", {}, what="COSIGN_KEY")


def test_password_from_the_environment_even_empty_else_asked_on_a_terminal_only() -> None:
    assert keys.read_password({"COSIGN_PASSWORD": ""}, confirm=False) == b""
    assert keys.read_password({"COSIGN_PASSWORD": "pw"}, confirm=True) == b"pw"
    with pytest.raises(UsageError, match="no terminal"):
        keys.read_password({}, confirm=False, interactive=lambda: False)
    answers = iter(["typed", "typed"])
    assert (
        keys.read_password({}, confirm=True, interactive=lambda: True, ask=lambda _: next(answers))
        == b"typed"
    )
    answers = iter(["typed", "other"])
    with pytest.raises(UsageError, match="differ"):
        keys.read_password({}, confirm=True, interactive=lambda: True, ask=lambda _: next(answers))


def test_generate_key_files_writes_0600_and_never_overwrites(tmp_path: Path) -> None:
    password = "a-long-distinctive-password-1234"
    key_path, public_path, fingerprint = keys.generate_key_files(tmp_path, {"COSIGN_PASSWORD": password})
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # Looked for where it could leak: the PEM body's JSON (a two-letter password would turn up in base64 by chance).
    body = base64.b64decode("".join(key_path.read_text().strip().splitlines()[1:-1]))
    assert password.encode() not in body and password.encode() not in key_path.read_bytes()
    key = keys.decrypt_private_key(key_path.read_bytes(), password.encode())
    assert keys.fingerprint(keys.load_public_key(public_path.read_bytes(), where="pub")) == fingerprint
    assert keys.fingerprint(key.public_key()) == fingerprint
    before = key_path.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        keys.generate_key_files(tmp_path, {"COSIGN_PASSWORD": password})
    assert key_path.read_bytes() == before
