"""What strangers and cosign v3 find on a real registry (Debian's docker-registry, distribution 2.8):

- the anonymous check after publishing (registry/visibility.py, and `check-public` / `ci --check-public` through the
  door as the publish job runs it): a registry with htpasswd auth refuses anonymous reads exactly as GHCR refuses them
  for a private package (401), even when the run holds the registry's credentials; an open one answers them;
- the Sigstore bundles cosign v3 attaches to a digest (sign/bundles.py): written here in the shapes cosign's
  ``WriteReferrer`` and go-containerregistry's referrers fallback tag give them (distribution 2.8, like GHCR, has no
  referrers API), then read back for the certificate's identity, also through KeylessSigner after a stand-in
  `cosign verify` prints bundle-mode output (cosign itself cannot run offline).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_images.catalog.refs import Repository
from ci_images.errors import RegistryError
from ci_images.loopback.server import RegistryServer, start_registry
from ci_images.oci import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, referrers_tag, sha256_digest
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool
from ci_images.registry.visibility import MISSING, PRIVATE, anonymous_problems, check_public
from ci_images.sign import bundles, keyless
from ci_images.sign.signer import KeylessSigner
from tests.doors import clean_env, run_door
from tests.integration.conftest import unavailable, vault_catalog

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "sign" / "fixtures" / "sigstore"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGSTORE_JS = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain-HTTP loopback registry without auth: anyone may read (a public package)."""
    if shutil.which("docker-registry") is None:
        unavailable("Debian's docker-registry is not installed")
    server = start_registry(tmp_path_factory.mktemp("open-registry"))
    yield server
    server.stop()


def _put_json(
    client: RegistryClient, repo: str, ref: str, document: dict[str, object], media_type: str
) -> str:
    body = json.dumps(document, separators=(",", ":")).encode()
    return client.put_manifest(repo, ref, body, media_type)


def _tiny_image(client: RegistryClient, repo: str, tag: str) -> tuple[str, int]:
    """An image with a config and no layers under ``tag``: (digest, size) of its manifest."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    client.upload_blob(repo, sha256_digest(config.encode()), config.encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config.encode()), "size": len(config)},
        "layers": [],
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return client.put_manifest(repo, tag, body, OCI_MANIFEST), len(body)


def _private_client(server: RegistryServer) -> RegistryClient:
    assert server.username and server.password
    return RegistryClient(server.host, credentials=Credentials(server.username, server.password))


@pytest.fixture
def strangers() -> Iterator[Callable[..., Callable[[str], RegistryClient]]]:
    """Anonymous client pools, as commands/setup.py makes them (``strangers(plain_http=...)`` gives a pool's get)."""
    pools: list[ClientPool] = []

    def make(**kwargs: Any) -> Callable[[str], RegistryClient]:
        pools.append(ClientPool(lambda host: RegistryClient(host, **kwargs)))
        return pools[-1].get

    yield make
    for pool in pools:
        pool.close()


def test_a_registry_that_refuses_strangers_is_named_with_its_fix(
    auth_registry: RegistryServer, strangers: Callable[..., Callable[[str], RegistryClient]]
) -> None:
    repo = f"ci-images-test/private-{secrets.token_hex(4)}"
    digest, _ = _tiny_image(_private_client(auth_registry), repo, "1.0")
    repository = Repository(auth_registry.host, repo)
    references = [(repository, "1.0"), (repository, digest)]
    anonymous = strangers()
    (problem,) = anonymous_problems(references, anonymous)
    assert problem.kind == PRIVATE and problem.repository == repository
    assert problem.references == (repository.with_tag("1.0"), repository.with_digest(digest))
    assert "401" in problem.detail
    assert "allow anonymous pulls" in problem.fix
    with pytest.raises(RegistryError, match="refuses anonymous reads") as caught:
        check_public(references, anonymous)
    assert caught.value.exit_code == 3
    # With credentials the same references are there: the check is about strangers only.
    assert _private_client(auth_registry).head_manifest(repo, "1.0") is not None


def test_an_open_registry_passes_and_a_missing_reference_is_named(
    open_registry: RegistryServer, strangers: Callable[..., Callable[[str], RegistryClient]]
) -> None:
    anonymous = strangers(plain_http=True)
    client = anonymous(open_registry.host)
    repo = f"ci-images-test/public-{secrets.token_hex(4)}"
    digest, _ = _tiny_image(client, repo, "1.0")
    repository = Repository(open_registry.host, repo)
    assert anonymous_problems([(repository, "1.0"), (repository, digest)], anonymous) == []
    check_public([(repository, "1.0")], anonymous)
    (problem,) = anonymous_problems([(repository, "1.0"), (repository, "2.0")], anonymous)
    assert problem.kind == MISSING and problem.references == (repository.with_tag("2.0"),)
    with pytest.raises(ValueError, match="with credentials"):
        anonymous_problems(
            [(repository, "1.0")], strangers(plain_http=True, credentials=Credentials("u", "p"))
        )


# ---- the command, through the door, as the publish job runs it -----------------------------------------------


def _published(client: RegistryClient, prefix: str, root: Path) -> tuple[Path, Path, str]:
    """A catalog of one entry (vault 2.0.0, tags 2.0.0 and latest) whose tags ``client`` has published under
    ``prefix`` (HOST/PATH), and a lock file pinning them: (catalog, lock file, digest)."""
    catalog = vault_catalog(root, 'tags: ["{version}", "latest"]\n')
    _, _, path = prefix.partition("/")
    digest, _ = _tiny_image(client, f"{path}/vault", "2.0.0")
    _tiny_image(client, f"{path}/vault", "latest")
    images = {
        f"{prefix}/vault:{tag}": {"digest": digest, "pinned": f"{prefix}/vault@{digest}"}
        for tag in ("2.0.0", "latest")
    }
    lock = root / "images.lock.json"
    lock.write_text(json.dumps({"version": 1, "images": images}), encoding="utf-8")
    return catalog, lock, digest


def test_check_public_fails_with_the_fix_where_strangers_are_refused(
    auth_registry: RegistryServer, tmp_path: Path
) -> None:
    """exit 3 naming the repository, every reference refused and the fix; the run holds the registry's credentials
    (as the publish job's environment may), and the check still reads as a stranger."""
    prefix = f"{auth_registry.host}/ci-images-test/private-{secrets.token_hex(4)}"
    catalog, lock, digest = _published(_private_client(auth_registry), prefix, tmp_path)
    assert auth_registry.username and auth_registry.password
    env = clean_env(
        CI_IMAGES_REGISTRY_USER=auth_registry.username, CI_IMAGES_REGISTRY_PASSWORD=auth_registry.password
    )
    report = tmp_path / "public.json"
    common = ["--catalog", str(catalog), "--registry", prefix, "--lock", str(lock)]
    done = run_door("module", ["ci", "--check-public", *common, "--json", str(report)], env)
    assert done.returncode == 3, done.stderr
    assert f"{prefix}/vault refuses anonymous reads" in done.stderr
    assert f"allow anonymous pulls of {prefix}/vault" in done.stderr
    assert auth_registry.password not in done.stderr + done.stdout
    (record,) = json.loads(report.read_text(encoding="utf-8"))
    wanted = [f"{prefix}/vault:2.0.0", f"{prefix}/vault:latest", f"{prefix}/vault@{digest}"]
    assert record["public"] is False and record["problem"] == PRIVATE
    assert record["references"] == record["failed"] == wanted
    # The standalone command is the same check.
    again = run_door("module", ["check-public", *common], env)
    assert again.returncode == 3 and "refuses anonymous reads" in again.stderr, again.stderr


def test_check_public_passes_where_strangers_may_read(open_registry: RegistryServer, tmp_path: Path) -> None:
    prefix = f"{open_registry.host}/ci-images-test/public-{secrets.token_hex(4)}"
    client = RegistryClient(open_registry.host, plain_http=True)
    catalog, lock, digest = _published(client, prefix, tmp_path)
    common = ["--catalog", str(catalog), "--registry", prefix, "--plain-http", "--lock", str(lock)]
    done = run_door("module", ["ci", "--check-public", *common, "--json"], clean_env())
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)
    assert record == {
        "repository": f"{prefix}/vault",
        "references": [f"{prefix}/vault:2.0.0", f"{prefix}/vault:latest", f"{prefix}/vault@{digest}"],
        "public": True,
    }
    human = run_door("module", ["check-public", *common], clean_env())
    assert human.returncode == 0 and human.stdout == f"public     {prefix}/vault  (3 references)\n"


def _attach_bundle(client: RegistryClient, repo: str, digest: str, size: int, bundle: bytes) -> None:
    """What cosign v3 `sign` leaves on a registry without the referrers API (cosign pkg/oci/remote/write.go
    WriteReferrer; the fallback tag as go-containerregistry's remote.Put writes it), plus an unrelated referrer."""
    empty = b"{}"
    client.upload_blob(repo, sha256_digest(empty), empty)
    entries = []
    for artifact_type, media_type, layer in [
        (BUNDLE_TYPE, BUNDLE_TYPE, bundle),
        ("application/spdx+json", "application/spdx+json", b'{"spdxVersion":"SPDX-2.3"}'),
    ]:
        client.upload_blob(repo, sha256_digest(layer), layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "artifactType": artifact_type,
                "digest": sha256_digest(empty),
                "size": len(empty),
            },
            "layers": [{"mediaType": media_type, "digest": sha256_digest(layer), "size": len(layer)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": size},
            "annotations": {"dev.sigstore.bundle.predicateType": keyless.BUNDLE_SIGNATURE_TYPE},
            "artifactType": artifact_type,
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        referrer = sha256_digest(body)
        client.put_manifest(repo, referrer, body, OCI_MANIFEST)
        entries.append(
            {"mediaType": OCI_MANIFEST, "digest": referrer, "size": len(body), "artifactType": artifact_type}
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    _put_json(client, repo, referrers_tag(digest), index, OCI_INDEX)


def test_the_signer_s_identity_is_read_from_the_bundle_on_the_registry(
    open_registry: RegistryServer, tmp_path: Path
) -> None:
    client = RegistryClient(open_registry.host, plain_http=True)
    repo = f"ci-images-test/signed-{secrets.token_hex(4)}"
    digest, size = _tiny_image(client, repo, "1.0")
    assert client.get_referrers(repo, digest) is None  # distribution 2.8, like GHCR: no referrers API
    assert bundles.read_bundles(client, repo, digest) == []
    bundle = (FIXTURES / "sigstore-go-bundle-provenance.json").read_bytes()
    _attach_bundle(client, repo, digest, size, bundle)

    assert bundles.read_bundles(client, repo, digest) == [json.loads(bundle)]  # the SPDX referrer is left out
    caller = keyless.reusable_policy(
        "sigstore/sigstore-js", "sigstore/sigstore-js", workflow=".github/workflows/release.yml"
    )
    assert bundles.bundle_identity(client, repo, digest, caller) == SIGSTORE_JS
    other_caller = keyless.reusable_policy(
        "sigstore/sigstore-js", "someone/else", workflow=".github/workflows/release.yml"
    )
    assert bundles.bundle_identity(client, repo, digest, other_caller) is None

    # A stand-in `cosign verify` that succeeds and prints what cosign v3 prints for a bundle: no identity.
    cosign = tmp_path / "cosign"
    cosign.write_text(f"#!/bin/sh\ncat {FIXTURES / 'cosign-verify-bundle-sign.txt'}\n", encoding="utf-8")
    cosign.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    verifier = KeylessSigner(env, identity=str(caller), policy=caller)
    verdict = verifier.verify(client, Repository(open_registry.host, repo), digest)
    assert verdict.ok and verdict.signer == SIGSTORE_JS
