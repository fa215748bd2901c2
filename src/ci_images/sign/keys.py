"""cosign's key files, read and written byte-compatibly: an ECDSA P-256 key, encrypted with a password.

The format, as cosign v2/v3 writes it (sigstore/cosign pkg/cosign/keys.go, ``marshalKeyPair`` and
``LoadPrivateKey``; the JSON from secure-systems-lab/go-securesystemslib encrypted/encrypted.go):

- PEM type ``ENCRYPTED SIGSTORE PRIVATE KEY`` (``ENCRYPTED COSIGN PRIVATE KEY`` is read as well);
- its body is the JSON ``{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":B64},
  "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}``, Go's encoding of []byte: standard base64;
- 32-byte salt and key, 24-byte nonce; the box holds the PKCS#8 DER of the private key;
- decryption accepts only N in {32768, 65536, 131072} with r=8, p=1 (``CheckParams``: tampered parameters could
  otherwise make a key file cost any amount of memory).

The public key is PEM ``PUBLIC KEY`` (PKIX, sigstore/sigstore pkg/cryptoutils/publickey.go). Signatures are ASN.1
DER ECDSA over SHA-256 of the payload, what ``signature.LoadDefaultSignerVerifier`` does for a P-256 key.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ci_images.errors import UsageError
from ci_images.log import log
from ci_images.oci import go_json, sha256_digest

PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"  # what cosign writes (keys.go: SigstorePrivateKeyPemType)
LEGACY_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"  # what cosign still reads (keys.go: CosignPrivateKeyPemType)
PUBLIC_PEM_TYPE = "PUBLIC KEY"
# encrypted.go: standardParams (the default for new keys), and the three parameter sets CheckParams accepts.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1
ACCEPTED_SCRYPT = frozenset({(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)})
SALT_SIZE, BOX_KEY_SIZE, NONCE_SIZE = 32, 32, 24  # encrypted.go: saltSize, boxKeySize, boxNonceSize

KEY_FILE, PUBLIC_FILE = "cosign.key", "cosign.pub"
KEY_VARIABLE, PASSWORD_VARIABLE = "COSIGN_KEY", "COSIGN_PASSWORD"
ENV_SCHEME = "env://"  # cosign pkg/blob/load.go: LoadFileOrURL reads env://VAR from the environment


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 key: cosign's default (keys.go: GeneratePrivateKey)."""
    return ec.generate_private_key(ec.SECP256R1())


def _scrypt_key(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=BOX_KEY_SIZE, n=n, r=r, p=p).derive(password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pem(kind: str, body: bytes) -> bytes:
    """PEM as Go's pem.EncodeToMemory writes it: 64 base64 characters per line."""
    text = base64.b64encode(body).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return ("\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]) + "\n").encode("ascii")


def _unpem(data: bytes, where: str) -> tuple[str, bytes]:
    """The type and body of the first PEM block of ``data``."""
    text = data.decode("ascii", errors="replace")
    begin = text.find("-----BEGIN ")
    header_end = text.find("-----", begin + 11) if begin >= 0 else -1
    if header_end < 0:
        raise UsageError(f"{where} holds no PEM block", fix="point it at the key file as cosign wrote it")
    kind = text[begin + 11 : header_end]
    end = text.find(f"-----END {kind}-----", header_end)
    if end < 0:
        raise UsageError(
            f"{where}: the PEM block has no END line", fix="the file is cut short; use a whole copy"
        )
    body = "".join(text[header_end + 5 : end].split())
    try:
        return kind, base64.b64decode(body, validate=True)
    except ValueError as exc:
        raise UsageError(
            f"{where}: the PEM body is not base64", fix="use an unedited copy of the key"
        ) from exc


def encrypt_private_key(
    key: ec.EllipticCurvePrivateKey,
    password: bytes,
    *,
    salt: bytes | None = None,
    nonce: bytes | None = None,
    n: int = SCRYPT_N,
) -> bytes:
    """cosign.key's bytes: the PKCS#8 DER of ``key`` sealed as encrypted.go's ``Encrypt`` does."""
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if (n, SCRYPT_R, SCRYPT_P) not in ACCEPTED_SCRYPT:
        raise UsageError(f"scrypt N={n} is not one cosign reads", fix="use N=65536")
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    box_key = _scrypt_key(password, salt, n, SCRYPT_R, SCRYPT_P)
    # secretbox.Seal output is the 16-byte MAC then the ciphertext: PyNaCl's .ciphertext (without the nonce).
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
    document = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return _pem(PEM_TYPE, go_json(document))


def decrypt_private_key(
    data: bytes, password: bytes, *, where: str = KEY_VARIABLE
) -> ec.EllipticCurvePrivateKey:
    """The private key in a cosign key file; UsageError (exit 2) for a wrong password or a damaged file."""
    kind, body = _unpem(data, where)
    if kind not in (PEM_TYPE, LEGACY_PEM_TYPE):
        raise UsageError(
            f"{where} is a {kind!r} PEM block, not a cosign key ({PEM_TYPE!r})",
            fix="point COSIGN_KEY at the cosign.key that `invoke generate-key` or `cosign generate-key-pair` wrote",
        )
    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(cipher["nonce"])
        sealed = base64.b64decode(document["ciphertext"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{where}: the key's JSON is damaged ({exc})", fix="use an unedited copy of the key"
        ) from exc
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise UsageError(
            f"{where}: kdf {kdf.get('name')!r} / cipher {cipher.get('name')!r} is not scrypt / nacl/secretbox",
            fix="use a key cosign wrote",
        )
    if (n, r, p) not in ACCEPTED_SCRYPT:
        raise UsageError(
            f"{where}: scrypt parameters N={n} r={r} p={p} are not ones cosign accepts",
            fix="use a key cosign wrote (N 32768, 65536 or 131072; r=8; p=1)",
        )
    if len(nonce) != NONCE_SIZE:
        raise UsageError(
            f"{where}: the nonce is {len(nonce)} bytes, not {NONCE_SIZE}", fix="use an unedited key"
        )
    try:
        der = nacl.secret.SecretBox(_scrypt_key(password, salt, n, r, p)).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise UsageError(
            f"{where}: cannot decrypt the key: wrong {PASSWORD_VARIABLE}, or the key file is damaged",
            fix=f"set {PASSWORD_VARIABLE} to the password the key was made with",
        ) from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UsageError(
            f"{where} holds a {type(key).__name__}, not an ECDSA P-256 key", fix="use a P-256 key"
        )
    return key


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(data: bytes, *, where: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"{where} is not a PEM public key ({exc})", fix="give cosign.pub") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UsageError(
            f"{where} is not an ECDSA P-256 public key", fix="give the cosign.pub of a cosign key"
        )
    return key


def fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """``sha256:`` + hex SHA-256 of the PKIX DER: `openssl pkey -pubin -in cosign.pub -outform DER | sha256sum`."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_digest(der)


def sign_bytes(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """ASN.1 DER ECDSA signature over SHA-256(payload)."""
    return key.sign(payload, ec.ECDSA(hashes.SHA256()))


def verify_bytes(key: ec.EllipticCurvePublicKey, payload: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# ---- where keys and passwords come from -------------------------------------------------------------------------


def mask_pem(text: str) -> None:
    """Register a PEM held in a variable as secret: whole, and each base64 line (a message may quote one)."""
    log.add_mask(text)
    for line in text.splitlines():
        if line.strip() and not line.startswith("-----"):
            log.add_mask(line.strip())


def read_key_ref(ref: str, env: Mapping[str, str], *, what: str) -> bytes:
    """A key as cosign names it: a path, or ``env://VAR`` holding the PEM itself."""
    if ref.startswith(ENV_SCHEME):
        name = ref.removeprefix(ENV_SCHEME)
        if name not in env:
            raise UsageError(
                f"{what} {ref}: ${name} is not set", fix=f"export {name} with the PEM, or give a path"
            )
        mask_pem(env[name])
        return env[name].encode()
    path = Path(ref).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{what} {ref}: cannot read it ({exc.strerror})", fix="give the path of the key file"
        ) from exc


def read_password(
    env: Mapping[str, str],
    *,
    confirm: bool,
    interactive: Callable[[], bool] | None = None,
    ask: Callable[[str], str] = getpass.getpass,
) -> bytes:
    """COSIGN_PASSWORD when set, even empty (as cosign's readPasswordFn); asked on a terminal otherwise."""
    if PASSWORD_VARIABLE in env:
        return env[PASSWORD_VARIABLE].encode()
    if not (interactive or sys.stdin.isatty)():
        raise UsageError(
            f"{PASSWORD_VARIABLE} is not set and there is no terminal to ask for the key's password on",
            fix=f"set {PASSWORD_VARIABLE} (an empty value means no password)",
        )
    first = ask("Enter password for private key: ")
    log.add_mask(first)
    if confirm and ask("Enter password for private key again: ") != first:
        raise UsageError("the two passwords differ", fix="run again and type the same password twice")
    return first.encode()


@dataclass(frozen=True)
class SigningKey:
    """A decrypted private key and what is shown of it: the public key and its fingerprint."""

    private: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, payload: bytes) -> bytes:
        return sign_bytes(self.private, payload)


def load_signing_key(ref: str, env: Mapping[str, str]) -> SigningKey:
    """COSIGN_KEY (path or env://VAR) decrypted with COSIGN_PASSWORD: UsageError (exit 2) before anything moves."""
    data = read_key_ref(ref, env, what=KEY_VARIABLE)
    return SigningKey(
        decrypt_private_key(data, read_password(env, confirm=False), where=f"{KEY_VARIABLE} {ref}")
    )


def _refuse_existing(folder: Path) -> None:
    existing = [p for p in (folder / KEY_FILE, folder / PUBLIC_FILE) if p.exists()]
    if existing:
        raise UsageError(
            f"{existing[0]} already exists: generate-key never overwrites a key",
            fix="move the old key pair away first, or pass --output DIR for another folder",
        )


def write_key_pair(folder: Path, password: bytes) -> tuple[Path, Path, str]:
    """cosign.key (0600, created exclusively: never overwritten) and cosign.pub in ``folder``."""
    key_path, public_path = folder / KEY_FILE, folder / PUBLIC_FILE
    _refuse_existing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    sealed = encrypt_private_key(key, password)
    # O_EXCL: a key file that appeared meanwhile is not overwritten; 0600 from the first byte on.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(sealed)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(public_key_pem(key.public_key()))
    return key_path, public_path, fingerprint(key.public_key())


def generate_key_files(folder: Path, env: Mapping[str, str]) -> tuple[Path, Path, str]:
    """`generate-key`: refuse to overwrite first, then take the password (COSIGN_PASSWORD, or asked twice on a
    terminal), then write cosign.key and cosign.pub. Returns their paths and the key's fingerprint."""
    _refuse_existing(folder)
    return write_key_pair(folder, read_password(env, confirm=True))
