"""Mirrors in the lab: registry-to-registry copies with upstream's digests, narrowed copies, dropped uploads, mounts.

Upstream's request log (``lab.upstream.requests()``) is the witness for what the tool pulled: a manifest GET is a pull
on Docker Hub; HEAD requests are not.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from ci_images.commands import images as image_commands
from ci_images.commands.options import BUILD, PUSH, TEST, Options, parse_options
from ci_images.errors import PublishError
from ci_images.oci import OCI_INDEX, join_platform
from ci_images.registry import documents
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.copy import Endpoint, copy_image
from ci_images.registry.pool import ClientPool
from ci_images.retry import RetryPolicy
from ci_images.run.result import Result

from .conftest import target_client
from .proxy import throttling_proxy

pytestmark = pytest.mark.integration

PREFIX_PATH = "getsops/ci-container-images"
KMS = "nsmithuk/local-kms"


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(3)}"


def write_catalog(root: Path, lab: Any, images: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    catalog = root / "images.yaml"
    catalog.write_text(
        f"registry: {lab.target.host}/{PREFIX_PATH}\nupstream_mirror: {lab.upstream.host}\nimages:\n{images}",
        encoding="utf-8",
    )
    return catalog


def push(catalog: Path, lab: Any, **given: Any) -> list[Result]:
    env = {**lab.env(), "CI": "true"}
    env.pop("CI_IMAGES_REGISTRY", None)  # the catalog names the target
    defaults = {"catalog": str(catalog), "lock": str(catalog.parent / "images.lock.json")}
    options: Options = parse_options(PUSH, {**defaults, **given}, env)
    return image_commands.push_images(options)


def manifest_gets(requests: list[tuple[str, str]], repo: str) -> list[str]:
    return [uri for method, uri in requests if method == "GET" and uri.startswith(f"/v2/{repo}/manifests/")]


def republish_reformatted(lab: Any, repo: str, version: str, new_tag: str) -> tuple[str, bytes]:
    """Upstream's index for ``version`` written again under ``new_tag`` as bytes no JSON serialiser of ours would
    produce (indented, keys in another order, an extra annotation): only a byte-for-byte copy keeps its digest."""
    client = lab.upstream_client()
    got = client.get_manifest(repo, version)
    assert got is not None
    document = json.loads(got[1])
    document["annotations"] = {
        "org.example.note": "reformatted on purpose",
        **document.get("annotations", {}),
    }
    body = json.dumps(dict(reversed(list(document.items()))), indent=3).encode() + b"\n"
    digest = client.put_manifest(repo, new_tag, body, document["mediaType"])
    return digest, body


def test_multi_arch_index_is_mirrored_with_upstreams_digests_and_a_second_run_pulls_nothing(
    lab: Any, tmp_path: Path
) -> None:
    tag = unique("3.12.0-fmt")
    upstream_digest, upstream_body = republish_reformatted(lab, KMS, "3.12.0", tag)
    target_repo = f"mirror/{KMS}-{secrets.token_hex(3)}"
    catalog = write_catalog(
        tmp_path,
        lab,
        f"""  kms-upstream:
    source: docker.io/{KMS}
    target: {target_repo}
    versions: ["{tag}"]
    platforms: all
    tags: ["{{version}}"]
    smoke: null
""",
    )
    (first,) = push(catalog, lab)
    assert first.action == "mirrored", first.reason
    assert first.digest == upstream_digest
    assert first.copy is not None and first.copy["exact"] is True
    assert "same digest as upstream" in first.reason
    full = f"{PREFIX_PATH}/{target_repo}"
    client = target_client(lab)
    held = client.get_manifest(full, tag)
    assert held is not None
    assert held[1] == upstream_body  # byte for byte
    upstream_platforms = documents.platform_digests(lab.upstream_client(), KMS, tag)
    assert set(upstream_platforms) == {"linux/amd64", "linux/arm64"}
    for platform, digest in upstream_platforms.items():
        info = client.head_manifest(full, digest)
        assert info is not None and info.digest == digest, platform
    assert documents.platform_digests(client, full, tag) == upstream_platforms

    lock = tmp_path / "images.lock.json"
    recorded = json.loads(lock.read_text())["images"]
    assert {r["platforms"] == ["linux/amd64", "linux/arm64"] for r in recorded.values()} == {True}

    before = len(lab.upstream.requests())
    target_before = len(lab.target.requests())
    (again,) = push(catalog, lab)
    assert (again.action, again.digest) == ("skipped", upstream_digest)
    # The platforms the target holds, not the catalog's word "all": the lock file is the same after either run.
    assert set(again.platforms) == {"linux/amd64", "linux/arm64"}
    assert json.loads(lock.read_text())["images"] == recorded
    seen = lab.upstream.requests()[before:]
    assert [m for m, u in seen if "/manifests/" in u] == ["HEAD"]  # the plan's HEAD: no GET, no pull
    assert not [m for m, _ in lab.target.requests()[target_before:] if m in {"PUT", "POST", "PATCH"}]


def test_platform_subset_mirror_lists_only_those_platforms_and_records_upstreams_digest(
    lab: Any, tmp_path: Path, engine: Any
) -> None:
    target_repo = f"mirror/{KMS}-{secrets.token_hex(3)}"
    entry = f"""  kms-amd64:
    source: docker.io/{KMS}
    target: {target_repo}
    versions: [{{version: "3.12.0", platforms: [linux/amd64]}}]
    tags: ["{{version}}"]
    smoke: kms
"""
    catalog = write_catalog(tmp_path, lab, entry)
    upstream_digest = lab.standins[KMS]["3.12.0"]
    upstream_platforms = documents.platform_digests(lab.upstream_client(), KMS, upstream_digest)
    before, target_before = len(lab.upstream.requests()), len(lab.target.requests())
    (first,) = push(catalog, lab, json=str(tmp_path / "report.json"))
    assert first.action == "mirrored", first.reason
    assert first.digest != upstream_digest
    assert first.platforms == ("linux/amd64",)
    assert f"digest differs from upstream's {upstream_digest.split(':')[1][:12]}" in first.reason
    record = json.loads((tmp_path / "report.json").read_text())[0]
    assert record["copy"]["exact"] is False
    assert record["copy"]["upstream_digest"] == record["source_digest"] == upstream_digest
    full = f"{PREFIX_PATH}/{target_repo}"
    client = target_client(lab)
    got = client.get_manifest(full, "3.12.0")
    assert got is not None and got[0].media_type == OCI_INDEX
    index = json.loads(got[1])
    assert [join_platform(m["platform"]) for m in index["manifests"]] == ["linux/amd64"]
    assert (
        index["manifests"][0]["digest"] == upstream_platforms["linux/amd64"]
    )  # the platform manifest is upstream's
    assert index["annotations"]["org.opencontainers.image.base.digest"] == upstream_digest
    # Smoke-tested from the target, by digest: the engine pulled the copy, never upstream's image.
    amd64 = upstream_platforms["linux/amd64"]
    assert ("GET", f"/v2/{full}/manifests/{amd64}") in lab.target.requests()[target_before:]
    assert manifest_gets(lab.upstream.requests()[before:], KMS) == [
        f"/v2/{KMS}/manifests/{upstream_digest}",  # the index, once
        f"/v2/{KMS}/manifests/{amd64}",  # the one platform copied
    ]
    assert first.smoked == ["linux/amd64"]

    before = len(lab.upstream.requests())
    (again,) = push(catalog, lab)
    assert (again.action, again.digest) == ("skipped", first.digest)
    assert manifest_gets(lab.upstream.requests()[before:], KMS) == []

    # Every platform now: a new copy, which finds amd64's manifest already there and sends only arm64's blobs.
    write_catalog(
        tmp_path,
        lab,
        entry.replace('[{version: "3.12.0", platforms: [linux/amd64]}]', '["3.12.0"]').replace(
            "    smoke: kms\n", "    platforms: all\n    smoke: null\n"
        ),
    )
    (wider,) = push(catalog, lab)
    assert wider.action == "mirrored", wider.reason
    assert wider.digest == upstream_digest
    assert wider.copy is not None
    assert wider.copy["manifests_present"] == 1 and wider.copy["manifests_copied"] == 1
    assert first.copy is not None
    assert wider.copy["blobs_uploaded"] == first.copy["blobs_uploaded"]  # one platform's config and layers


def test_a_blob_upload_dropped_mid_way_starts_over_and_the_digests_still_match(lab: Any) -> None:
    repo = "hashicorp/vault"
    upstream_digest = lab.standins[repo]["2.0.0"]
    dropped: list[str] = []

    def drop(method: str, path: str, length: int) -> bool:
        # The first large blob upload loses its connection half-way through its body.
        if method == "PUT" and "/blobs/uploads/" in path and length > 1_000_000 and not dropped:
            dropped.append(path)
            return True
        return False

    credentials = Credentials(lab.target.username, lab.target.password)
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=0.5, max_total_s=600)
    upstream = ClientPool(lambda host: RegistryClient(host, ca_bundle=lab.ca_bundle, role="upstream"))
    with throttling_proxy(lab.target.host, str(lab.ca_bundle), drop=drop) as (proxy, seen):
        target = ClientPool(
            lambda host: RegistryClient(host, credentials=credentials, plain_http=True, retry=retry)
        )
        target_repo = f"{PREFIX_PATH}/{unique('dropped')}"
        copied = copy_image(
            Endpoint(upstream, lab.upstream.host, repo), upstream_digest, Endpoint(target, proxy, target_repo)
        )
    assert dropped, "no upload was large enough to drop"
    assert [s for m, p, s in seen if p == dropped[0]] == [0]  # cut, never answered
    blob = dropped[0].rsplit("digest=", 1)[1].replace("%3A", ":")
    puts = [s for m, p, s in seen if m == "PUT" and p.endswith(f"digest={blob.replace(':', '%3A')}")]
    assert puts == [0, 201]  # a second upload session carried the whole blob
    assert copied.exact and copied.digest == upstream_digest
    client = target_client(lab)
    assert client.head_manifest(target_repo, upstream_digest) is not None
    # By digest: other tests may re-release the upstream tag meanwhile.
    for platform, digest in documents.platform_digests(lab.upstream_client(), repo, upstream_digest).items():
        info = client.head_manifest(target_repo, digest)
        assert info is not None and info.digest == digest, platform
    upstream.close()


def test_a_copy_within_one_registry_mounts_blobs_instead_of_sending_them(lab: Any) -> None:
    credentials = Credentials(lab.target.username, lab.target.password)
    pool = ClientPool(lambda host: RegistryClient(host, credentials=credentials, ca_bundle=lab.ca_bundle))
    upstream = ClientPool(lambda host: RegistryClient(host, ca_bundle=lab.ca_bundle, role="upstream"))
    digest = lab.standins["library/vault"]["1.10.0"]
    first_repo, second_repo = f"{PREFIX_PATH}/{unique('mount-a')}", f"{PREFIX_PATH}/{unique('mount-b')}"
    copy_image(
        Endpoint(upstream, lab.upstream.host, "library/vault"),
        digest,
        Endpoint(pool, lab.target.host, first_repo),
    )
    before = len(lab.target.requests())
    copied = copy_image(
        Endpoint(pool, lab.target.host, first_repo), digest, Endpoint(pool, lab.target.host, second_repo)
    )
    assert copied.exact
    assert copied.counts.blobs_uploaded == 0 and copied.counts.blobs_mounted > 0
    posts = [u for m, u in lab.target.requests()[before:] if m == "POST"]
    assert posts and all("mount=" in u for u in posts)
    assert not [u for m, u in lab.target.requests()[before:] if m == "PUT" and "/blobs/" in u]
    pool.close()
    upstream.close()


def test_single_platform_upstream_mirrors_as_is_and_builds_need_the_version_narrowed(
    lab: Any, tmp_path: Path
) -> None:
    """local-kms 3.11.0 is one amd64 manifest upstream (no index): the mirror copies it as it is; a build asked for
    amd64 and arm64 fails that entry alone, and builds once the version says amd64 only."""
    (tmp_path / "images").mkdir()
    build_folder = Path(__file__).resolve().parents[2] / "images" / "local-kms"
    mirror_repo = f"mirror/{KMS}-{secrets.token_hex(3)}"
    images = f"""  kms-old-mirror:
    source: docker.io/{KMS}
    target: {mirror_repo}
    versions: ["3.11.0"]
    platforms: all
    tags: ["{{version}}"]
  kms-old:
    source: docker.io/{KMS}
    versions: ["3.11.0"]
    build: {build_folder}
    platforms: [linux/amd64, linux/arm64]
    tags: ["{{version}}"]
    smoke: kms
"""
    catalog = write_catalog(tmp_path, lab, images)
    with pytest.raises(PublishError) as raised:
        push(catalog, lab, json=str(tmp_path / "r.json"))
    assert raised.value.exit_code == 8
    records = {r["image"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert records["kms-old-mirror"]["action"] == "mirrored"
    assert records["kms-old-mirror"]["digest"] == lab.standins[KMS]["3.11.0"]
    assert records["kms-old-mirror"]["platforms"] == ["linux/amd64"]
    assert records["kms-old"]["action"] == "failed"
    assert "has no image for linux/arm64" in records["kms-old"]["reason"]
    assert "platforms: [...] on the version" in records["kms-old"]["error"]

    write_catalog(
        tmp_path,
        lab,
        images.replace(
            'versions: ["3.11.0"]\n    build',
            'versions: [{version: "3.11.0", platforms: [linux/amd64]}]\n    build',
        ),
    )
    results = {r.image: r for r in push(catalog, lab)}
    assert results["kms-old-mirror"].action == "skipped"
    assert results["kms-old"].action == "built", results["kms-old"].reason
    client = target_client(lab)
    assert set(documents.platform_digests(client, f"{PREFIX_PATH}/kms-old", "3.11.0")) == {"linux/amd64"}


def test_build_images_then_test_images_on_a_mirror_of_every_platform(lab: Any, tmp_path: Path) -> None:
    """With no target, a mirror's upstream images are pulled by digest and smoke-tested; test-images finds them."""
    catalog = write_catalog(
        tmp_path,
        lab,
        f"""  kms-old-mirror-{secrets.token_hex(2)}:
    source: docker.io/{KMS}
    versions: ["3.11.0"]
    platforms: all
    tags: ["{{version}}"]
    smoke: kms
""",
    )
    env = {**lab.env(), "CI": "true"}
    (built,) = image_commands.build_images(parse_options(BUILD, {"catalog": str(catalog)}, env), smoke=True)
    assert (built.action, built.platforms, built.smoked) == ("built", ("linux/amd64",), ["linux/amd64"])
    (tested,) = image_commands.test_images(parse_options(TEST, {"catalog": str(catalog)}, env))
    assert (tested.action, tested.smoked) == ("tested", ["linux/amd64"])
