#!/usr/bin/python3
"""Stand-in for nsmithuk/local-kms: moto's KMS behind local-kms' HTTP front door.

Honoured like local-kms: PORT (8080), KMS_ACCOUNT_ID, KMS_REGION (every request is served from that region whatever
the client signs for), KMS_SEED_PATH (/init/seed.yaml; local-kms' seed format: Keys.Symmetric.Aes with fixed KeyIds,
BackingKeys (the last one is the key material), Description, Origin EXTERNAL, NextKeyRotation (turns rotation on);
Keys.Asymmetric.Rsa/Ecc with PrivateKeyPem and KeyUsage; Aliases), only POST / (404 elsewhere, 405 for other
methods, 415 without a JSON content type). Not honoured: KMS_DATA_PATH (keys live in memory), earlier backing keys
(ciphertexts made with them do not decrypt), the v2 seed format. Ciphertext blobs are moto's, not local-kms'.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ACCOUNT = os.environ.get("KMS_ACCOUNT_ID") or "111122223333"
REGION = os.environ.get("KMS_REGION") or "eu-west-2"
# moto reads the account from this variable on every request; set it before moto is imported.
os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto.kms.models import kms_backends
from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.serving import make_server

_CREDENTIAL_SCOPE = re.compile(r"(Credential=[^/,]*/\d{8}/)[^/]+(/)")
_CURVES = {
    "secp256r1": "ECC_NIST_P256",
    "secp384r1": "ECC_NIST_P384",
    "secp521r1": "ECC_NIST_P521",
    "secp256k1": "ECC_SECG_P256K1",
}

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _error(start_response: StartResponse, status: str, kind: str, message: str) -> Iterable[bytes]:
    body = (json.dumps({"__type": kind, "message": message}) + "\n").encode()
    start_response(
        status,
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", kind),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def front_door(
    app: Callable[..., Iterable[bytes]],
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """local-kms' request checks, then moto, always in KMS_REGION."""

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") != "/":
            return _error(start_response, "404 Not Found", "NotFoundException", "Not Found")
        if environ.get("REQUEST_METHOD") != "POST":
            return _error(
                start_response, "405 Method Not Allowed", "InvalidRequestException", "Method Not Allowed"
            )
        if "json" not in environ.get("CONTENT_TYPE", ""):
            return _error(
                start_response,
                "415 Unsupported Media Type",
                "InvalidRequestException",
                "Only JSON based content types accepted",
            )
        # moto takes the region from the signature's credential scope: pin it, as local-kms serves one region.
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if _CREDENTIAL_SCOPE.search(auth):
            environ["HTTP_AUTHORIZATION"] = _CREDENTIAL_SCOPE.sub(rf"\g<1>{REGION}\g<2>", auth, count=1)
        else:
            environ["HTTP_AUTHORIZATION"] = (
                f"AWS4-HMAC-SHA256 Credential=LOCALKMS/20000101/{REGION}/kms/aws4_request, "
                "SignedHeaders=host, Signature=0"
            )
        return app(environ, start_response)

    return wsgi


def _fixed_id(backend: Any, key: Any, key_id: str) -> None:
    # moto picks a random id at creation; local-kms seeds keep theirs.
    backend.keys.pop(key.id)
    key.id = key_id
    key.arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    backend.keys[key_id] = key


def seed(path: str) -> None:
    if not Path(path).exists():
        say(f"No file found at path {path}; skipping seeding.")
        return
    with Path(path).open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    keys = doc.get("Keys") or {}
    if not isinstance(keys, dict):
        raise SystemExit(f"{path}: only local-kms' v1 seed format (Keys: {{Symmetric: ..}}) is supported")
    backend = kms_backends[ACCOUNT][REGION]
    for entry in (keys.get("Symmetric") or {}).get("Aes") or []:
        _seed_aes(backend, entry)
    asymmetric = keys.get("Asymmetric") or {}
    for kind in ("Rsa", "Ecc"):
        for entry in asymmetric.get(kind) or []:
            _seed_pair(backend, entry, path)
    for alias in doc.get("Aliases") or []:
        name = str(alias["AliasName"])
        backend.create_alias(
            str(alias["TargetKeyId"]), name if name.startswith("alias/") else f"alias/{name}"
        )
        say(f"Seeded alias {name}")


def _seed_aes(backend: Any, entry: dict[str, Any]) -> None:
    meta = entry.get("Metadata") or {}
    origin = meta.get("Origin") or "AWS_KMS"
    key = backend.create_key(
        None, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", meta.get("Description") or "", None, origin=origin
    )
    _fixed_id(backend, key, str(meta["KeyId"]))
    backing = entry.get("BackingKeys") or []
    if backing:
        key.key_material = bytes.fromhex(str(backing[-1]))
    elif origin == "EXTERNAL":
        key.key_state, key.enabled = "PendingImport", False
    if entry.get("NextKeyRotation"):
        key.key_rotation_status = True
    say(f"Seeded AES key {key.arn}")


def _seed_pair(backend: Any, entry: dict[str, Any], path: str) -> None:
    meta = entry.get("Metadata") or {}
    private = serialization.load_pem_private_key(str(entry["PrivateKeyPem"]).encode(), password=None)
    if isinstance(private, rsa.RSAPrivateKey):
        spec = f"RSA_{private.key_size}"
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        spec = _CURVES[private.curve.name]
    else:
        raise SystemExit(f"{path}: key {meta.get('KeyId')} is neither RSA nor ECC")
    usage = meta.get("KeyUsage") or "SIGN_VERIFY"
    pair: Any = backend.create_key(None, usage, spec, meta.get("Description") or "", None)
    pair.private_key.private_key = private  # moto's wrapper keeps the cryptography key here
    _fixed_id(backend, pair, str(meta["KeyId"]))
    say(f"Seeded {spec} key {pair.arn}")


def main() -> None:
    port = int(os.environ.get("PORT") or "8080")
    seed(os.environ.get("KMS_SEED_PATH") or "/init/seed.yaml")
    # PID 1 ignores SIGTERM unless it handles it: stop promptly on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = make_server("0.0.0.0", port, front_door(create_backend_app("kms")), threaded=True)  # noqa: S104
    say(f"Local KMS (moto stand-in, account {ACCOUNT}, region {REGION}) listening on 0.0.0.0:{port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
