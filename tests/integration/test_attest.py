"""Attestations on a real registry: provenance and an SBOM (syft, offline) attached to an image and its platforms,
read back with the registry client and with skopeo, verified, and tampered with; and skopeo's ``sigstoreSigned``
policy with ``use-sigstore-attachments`` on a single-platform pull of an index signed with and without recursion.

No engine: the images are made as registry documents (a two-platform index over tiny layers with a dpkg status
file, so syft has a package to find), pushed to the ``auth_registry`` fixture (TLS with its CA in docker's
certs.d, htpasswd auth).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci_images.catalog.refs import Repository
from ci_images.lab.lab import put_tags
from ci_images.loopback.server import RegistryServer
from ci_images.oci import OCI_CONFIG, OCI_MANIFEST, Descriptor
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import make_index
from ci_images.sign import attach, attest, dsse, keys, provenance, sbom
from ci_images.sign import statement as statements
from ci_images.sign.attest_verify import EDITED, WRONG_BASE, WRONG_KEY, WRONG_SUBJECT, AttestationVerifier
from ci_images.sign.signer import KeySigner
from tests.integration.conftest import unavailable

pytestmark = pytest.mark.integration
PLATFORMS = ("linux/amd64", "linux/arm64")
DPKG_STATUS = (
    b"Package: ci-images-probe\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
    b"Maintainer: nobody <nobody@example.invalid>\nArchitecture: all\nVersion: 1.2.3-1\n"
    b"Description: a package for syft to find\n\n"
)


def _tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A deterministic gzip tar of ``files``; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_tiny_image(client: RegistryClient, repo: str, platform: str, marker: str) -> Descriptor:
    os_name, arch = platform.split("/")
    blob, diff_id = _tar_gz(
        {
            "etc/os-release": b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
            "var/lib/dpkg/status": DPKG_STATUS,
            "marker": f"{marker} {platform}\n".encode(),
        }
    )
    config = json.dumps(
        {
            "architecture": arch,
            "os": os_name,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "config": {},
        }
    ).encode()
    client.upload_blob(repo, _sha(blob), blob)
    client.upload_blob(repo, _sha(config), config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _sha(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()
    digest = client.put_manifest(repo, _sha(manifest), manifest, OCI_MANIFEST)
    return Descriptor(OCI_MANIFEST, digest, len(manifest), platform)


@dataclass
class Image:
    server: RegistryServer
    repository: Repository
    index: str
    platforms: dict[str, str]

    def client(self) -> RegistryClient:
        assert self.server.username is not None and self.server.password is not None
        return RegistryClient(
            self.server.host, credentials=Credentials(self.server.username, self.server.password)
        )


def push_index(server: RegistryServer, tag: str = "1.0.0") -> Image:
    repository = Repository(server.host, f"attest-tests/img-{secrets.token_hex(4)}")
    assert server.username is not None and server.password is not None
    client = RegistryClient(server.host, credentials=Credentials(server.username, server.password))
    marker = secrets.token_hex(8)
    manifests = [push_tiny_image(client, repository.path, platform, marker) for platform in PLATFORMS]
    body, media_type = make_index(manifests, {})
    index = put_tags(client, repository.path, body, media_type, [tag])
    return Image(server, repository, index, {m.platform or "": m.digest for m in manifests})


@pytest.fixture(scope="module")
def key() -> keys.SigningKey:
    return keys.SigningKey(keys.generate_private_key())


@pytest.fixture(scope="module")
def image(auth_registry: RegistryServer) -> Image:
    return push_index(auth_registry)


UPSTREAM_INDEX = "sha256:" + "1" * 64


def _provenance(image: Image, covered: Sequence[str]) -> dict[str, Any]:
    entry = provenance.EntryParameters(
        catalog="images.yaml",
        image="vault",
        variant="default",
        version="2.0.0",
        source="docker.io/hashicorp/vault",
        platforms=PLATFORMS,
        tags=(image.repository.with_tag("2.0.0"),),
    )
    bases = {p: "sha256:" + str(i + 2) * 64 for i, p in enumerate(PLATFORMS) if p in covered}
    run = provenance.Run(
        provenance.LOCAL_BUILDER, "urn:uuid:0", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"
    )
    recipe = provenance.Recipe("images/vault/Dockerfile", "sha256:" + "a" * 64, "images/vault", "b" * 64)
    checkout = provenance.Checkout(provenance.PROJECT_URL, "c" * 40)
    return provenance.build_predicate(
        entry, provenance.Upstream(UPSTREAM_INDEX, bases), recipe, checkout, run
    )


@pytest.fixture(scope="module")
def attested(image: Image, key: keys.SigningKey) -> dict[str, list[attest.AttestOutcome]]:
    """What push-images will do: attach.attest_image over the index and its platforms; outcomes by digest."""
    client = image.client()
    digests = attach.read_image(client, image.repository, image.index)
    sboms = sbom.SbomGenerator(dict(os.environ))
    wants = attach.wanted(
        digests,
        provenance_for=lambda covered: _provenance(image, covered),
        sbom_for=lambda digest: sboms.spdx(client, image.repository, digest, layers=digests.layers[digest]),
        same_files=sboms.same_files,
    )
    outcomes = attach.attest_image(client, image.repository, wants, attest.KeyAttester(key))
    by_digest: dict[str, list[attest.AttestOutcome]] = {}
    for outcome in outcomes:
        by_digest.setdefault(outcome.digest, []).append(outcome)
    return by_digest


def test_syft_finds_the_package_offline_from_the_registry(image: Image) -> None:
    generator = sbom.SbomGenerator(dict(os.environ))
    client = image.client()
    digest = image.platforms["linux/arm64"]
    document = generator.spdx(client, image.repository, digest)
    assert document["spdxVersion"].startswith("SPDX-2.")
    names = {(p.get("name"), p.get("versionInfo")) for p in document["packages"]}
    assert ("ci-images-probe", "1.2.3-1") in names
    assert digest in json.dumps(document)  # it describes that manifest
    assert generator.spdx(client, image.repository, digest) is document  # once per digest


def test_every_digest_carries_verified_attestations(
    image: Image, key: keys.SigningKey, attested: dict[str, list[attest.AttestOutcome]]
) -> None:
    client = image.client()
    # The index: its provenance and one SBOM per platform; each platform: its provenance and its SBOM.
    assert {d: len(o) for d, o in attested.items()} == {image.index: 3} | dict.fromkeys(
        image.platforms.values(), 2
    )
    assert all(o.written for outcomes in attested.values() for o in outcomes)
    verdicts = attach.check_image(
        client,
        image.repository,
        attach.read_image(client, image.repository, image.index),
        verifier=None,
        checker=AttestationVerifier(key.public),
        expected_upstreams={UPSTREAM_INDEX},
    )
    assert len(verdicts) == 6
    assert all(v.ok and v.signer == key.fingerprint for v in verdicts), [v.message for v in verdicts]
    for digest, outcomes in attested.items():
        held = attest.read_attestations(client, image.repository.path, digest)
        assert [f.layer.digest for f in held.found] == [o.envelope for o in outcomes]
    index_sboms = {o.describes for o in attested[image.index] if o.predicate_type == statements.SPDX_DOCUMENT}
    assert index_sboms == set(image.platforms.values())


def test_a_second_run_adds_nothing(
    image: Image, key: keys.SigningKey, attested: dict[str, list[attest.AttestOutcome]]
) -> None:
    client = image.client()
    attester = attest.KeyAttester(key)
    digest = image.platforms["linux/amd64"]
    before = client.head_manifest(image.repository.path, attest.attestation_tag(digest))
    provenance_wanted = attest.Wanted(
        digest, statements.SLSA_PROVENANCE_V1, lambda: _provenance(image, ["linux/amd64"])
    )
    again = attester.attest(client, image.repository, provenance_wanted)
    # A regenerated SBOM differs in its bytes (timestamps, namespace): still the same attestation, not made again.
    generator = sbom.SbomGenerator(dict(os.environ))
    sbom_wanted = attest.Wanted(
        digest, statements.SPDX_DOCUMENT, lambda: generator.spdx(client, image.repository, digest)
    )
    sbom_again = attester.attest(client, image.repository, sbom_wanted)
    assert not again.written and not sbom_again.written
    assert generator.scans == 0
    assert again.envelope == attested[digest][0].envelope
    assert client.count("PUT") == client.count("POST") == 0
    assert client.head_manifest(image.repository.path, attest.attestation_tag(digest)) == before


def test_skopeo_reads_the_att_image_as_cosign_lays_it_out(
    image: Image, attested: dict[str, list[attest.AttestOutcome]], tmp_path: Path
) -> None:
    """Independent of our client: skopeo fetches the .att manifest; openssl checks the envelope's signature."""
    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed")
    server = image.server
    digest = image.platforms["linux/amd64"]
    ref = f"docker://{server.host}/{image.repository.path}:{attest.attestation_tag(digest)}"
    creds = f"{server.username}:{server.password}"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--creds", creds, ref], capture_output=True, check=True
    ).stdout
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    layers = manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == [dsse.ENVELOPE_MEDIA_TYPE] * 2
    assert [layer["annotations"]["predicateType"] for layer in layers] == [
        statements.SLSA_PROVENANCE_V1,
        statements.SPDX_DOCUMENT,
    ]
    assert all(layer["annotations"]["dev.cosignproject.cosign/signature"] == "" for layer in layers)
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", "--raw", "--creds", creds, ref], capture_output=True, check=True
        ).stdout
    )
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]
    assert len(config["history"]) == 2


def test_openssl_verifies_the_envelope_from_the_registry(
    image: Image, key: keys.SigningKey, attested: dict[str, list[attest.AttestOutcome]], tmp_path: Path
) -> None:
    client = image.client()
    digest = image.platforms["linux/arm64"]
    held = attest.read_attestations(client, image.repository.path, digest)
    document = json.loads(held.found[0].blob)
    assert list(document) == ["payload", "payloadType", "signatures"]
    body = base64.b64decode(document["payload"])
    pae = b"DSSEv1 %d %s %d %s" % (
        len(document["payloadType"]),
        document["payloadType"].encode(),
        len(body),
        body,
    )
    (tmp_path / "pae").write_bytes(pae)
    (tmp_path / "sig").write_bytes(base64.b64decode(document["signatures"][0]["sig"]))
    (tmp_path / "pub.pem").write_bytes(keys.public_key_pem(key.public))
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            tmp_path / "pub.pem",
            "-signature",
            tmp_path / "sig",
            tmp_path / "pae",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "Verified OK" in result.stdout
    claim = json.loads(body)
    assert claim["subject"] == [
        {
            "name": f"{image.server.host}/{image.repository.path}",
            "digest": {"sha256": digest.removeprefix("sha256:")},
        }
    ]
    assert provenance.upstream_digest(claim["predicate"]) == UPSTREAM_INDEX


# ---- every platform signed: containers/image's sigstoreSigned policy on a single-platform pull ------------------


def _skopeo_pull(image: Image, public_key: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """`skopeo copy` of the index's tag as podman and CRI-O pull it: the host's platform only, under a policy that
    requires a sigstore signature by ``public_key``, found through ``use-sigstore-attachments`` (the .sig tags)."""
    server = image.server
    scope = f"{server.host}/{image.repository.path}"
    policy = folder / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        scope: [
                            {
                                "type": "sigstoreSigned",
                                "keyPath": str(public_key),
                                # cosign's payload names the repository only (no tag, no digest).
                                "signedIdentity": {"type": "matchRepository"},
                            }
                        ]
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    registries = folder / "registries.d"
    registries.mkdir()
    (registries / "lab.yaml").write_text(
        f"docker:\n  {server.host}:\n    use-sigstore-attachments: true\n", encoding="utf-8"
    )
    return subprocess.run(
        [
            "skopeo",
            "--policy",
            str(policy),
            "--registries.d",
            str(registries),
            "copy",
            "--src-creds",
            f"{server.username}:{server.password}",
            f"docker://{scope}:1.0.0",
            f"dir:{folder / 'pulled'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Debian's containers/image is built without sigstore: its skopeo finds a sigstore signature and then stops with this
# instead of verifying it ("Debian-local change"). Reaching it proves the lookup found a signature for the digest
# the pull resolved; the signature itself is checked by our verifier and by openssl (test_sign.py).
DEBIAN_NO_SIGSTORE = "sigstore disabled"


@pytest.mark.parametrize("recursive", [False, True], ids=["index-only", "recursive"])
def test_a_single_platform_pull_needs_every_platform_signed(
    auth_registry: RegistryServer, key: keys.SigningKey, tmp_path: Path, recursive: bool
) -> None:
    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed")
    image = push_index(auth_registry)
    public = tmp_path / "cosign.pub"
    public.write_bytes(keys.public_key_pem(key.public))
    outcome = KeySigner(key).sign(image.client(), image.repository, image.index, recursive=recursive)
    assert set(outcome.signed) == ({image.index, *image.platforms.values()} if recursive else {image.index})
    pulled = _skopeo_pull(image, public, tmp_path)
    if not recursive:
        # The index's .sig is there, but the pull resolves the host's platform manifest, which has none.
        assert pulled.returncode != 0
        assert "A signature was required, but no signature exists" in pulled.stderr
        return
    if DEBIAN_NO_SIGSTORE in pulled.stderr:
        assert "no signature exists" not in pulled.stderr
        return
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "manifest.json").is_file()


# ---- tampering with the registry --------------------------------------------------------------------------------


def test_tampering_in_the_registry_fails_each_with_its_own_problem(
    auth_registry: RegistryServer, key: keys.SigningKey
) -> None:
    """The four tamper cases, done to the registry as an attacker with push rights would."""
    image = push_index(auth_registry)
    client = image.client()
    repo = image.repository.path
    amd64, arm64 = image.platforms["linux/amd64"], image.platforms["linux/arm64"]
    attester = attest.KeyAttester(key)
    verifier = AttestationVerifier(key.public)
    for platform, digest in image.platforms.items():
        made = functools.partial(_provenance, image, [platform])
        attester.attest(client, image.repository, attest.Wanted(digest, statements.SLSA_PROVENANCE_V1, made))

    def check(digest: str) -> str | None:
        verdict = verifier.check(
            client, image.repository, digest, statements.SLSA_PROVENANCE_V1, expected_upstream=UPSTREAM_INDEX
        )
        return verdict.problem

    assert check(amd64) is None and check(arm64) is None

    # A valid attestation of arm64 moved under amd64's tag.
    got = client.get_manifest(repo, attest.attestation_tag(arm64))
    assert got is not None
    original = client.get_manifest(repo, attest.attestation_tag(amd64))
    assert original is not None
    client.put_manifest(repo, attest.attestation_tag(amd64), got[1], OCI_MANIFEST)
    assert check(amd64) == WRONG_SUBJECT

    # An edited statement: the envelope's payload changed, its signature kept.
    [layer] = json.loads(original[1])["layers"]
    envelope = json.loads(client.get_blob(repo, layer["digest"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://example.invalid/evil"
    envelope["payload"] = base64.b64encode(statements.encode(statement)).decode()
    _replace_layer(client, repo, amd64, original[1], json.dumps(envelope).encode())
    assert check(amd64) == EDITED

    # An envelope signed by another key.
    other = keys.SigningKey(keys.generate_private_key())
    forged = dsse.sign(
        other,
        attest.statement_bytes(
            image.repository, amd64, statements.SLSA_PROVENANCE_V1, _provenance(image, ["linux/amd64"])
        ),
    ).to_json()
    _replace_layer(client, repo, amd64, original[1], forged, signer=other.fingerprint)
    assert check(amd64) == WRONG_KEY

    # A provenance naming another base, properly signed (say, an old one replayed).
    client.put_manifest(repo, attest.attestation_tag(amd64), original[1], OCI_MANIFEST)
    predicate = _provenance(image, ["linux/amd64"])
    predicate["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] = "9" * 64
    replayed = dsse.sign(
        key, attest.statement_bytes(image.repository, amd64, statements.SLSA_PROVENANCE_V1, predicate)
    ).to_json()
    _replace_layer(client, repo, amd64, original[1], replayed, signer=key.fingerprint)
    assert check(amd64) == WRONG_BASE


def _replace_layer(
    client: RegistryClient, repo: str, digest: str, manifest: bytes, blob: bytes, *, signer: str | None = None
) -> None:
    """Put ``blob`` in place of the one layer of ``manifest`` under ``digest``'s .att tag (config left as it was)."""
    document = json.loads(manifest)
    [layer] = document["layers"]
    client.upload_blob(repo, _sha(blob), blob)
    layer["digest"], layer["size"] = _sha(blob), len(blob)
    if signer:
        layer["annotations"]["io.github.ci-images.signer"] = signer
    client.put_manifest(repo, attest.attestation_tag(digest), json.dumps(document).encode(), OCI_MANIFEST)
