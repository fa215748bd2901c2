"""The main job against the lab: real engine, real TLS registries, stand-in upstream images, real smoke tests."""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from ci_images.commands import images as image_commands
from ci_images.commands.options import BUILD, PUSH, Options, parse_options
from ci_images.errors import EntriesFailed, PublishError, UsageError
from ci_images.lab.lab import put_tags, read_labels
from ci_images.registry import documents
from ci_images.registry.client import RegistryClient
from ci_images.registry.push import push_engine_image
from ci_images.report import table as report
from ci_images.run.result import Result
from tests.doors import clean_env, run_door

from .conftest import target_client
from .proxy import throttling_proxy

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX_PATH = "getsops/ci-container-images"


def write_catalog(root: Path, lab: Any, *, extra_images: str = "") -> Path:
    """A small catalog in ``root`` (with a copy of images/) pointing at the lab's upstream and target."""
    shutil.copytree(REPO_ROOT / "images", root / "images", dirs_exist_ok=True)
    catalog = root / "images.yaml"
    catalog.write_text(
        f"""
registry: {lab.target.host}/{PREFIX_PATH}
upstream_mirror: {lab.upstream.host}
platforms: [linux/amd64, linux/arm64]
images:
  local-kms:
    source: docker.io/nsmithuk/local-kms
    versions: ["3.11.7"]
    build: images/local-kms
    smoke: kms
    variants:
      seeded:
        build_args: {{KMS_SEED: sops-test}}
  vault:
    source: docker.io/hashicorp/vault
    versions: ["2.0.0"]
    build: images/vault
    smoke: vault
{extra_images}""",
        encoding="utf-8",
    )
    return catalog


def options(catalog: Path, lab: Any, command: str = PUSH, **given: Any) -> Options:
    """Options as the doors make them (the same parsing and checks), for the lab; ``given`` as typed, '-' as '_'."""
    env = {**lab.env(), "CI": "true"}
    env.pop("CI_IMAGES_REGISTRY", None)  # the catalog names the target
    defaults = {"catalog": str(catalog)}
    if command == PUSH:
        defaults["lock"] = str(catalog.parent / "images.lock.json")
    parsed: Options = parse_options(command, {**defaults, **given}, env)
    return parsed


def counts(requests: list[tuple[str, str]]) -> dict[str, int]:
    return {
        "manifest_get": sum(1 for m, u in requests if m == "GET" and "/manifests/" in u),
        "writes": sum(1 for m, _ in requests if m in {"PUT", "POST", "PATCH", "DELETE"}),
    }


@pytest.fixture(scope="module")
def published(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Result]]:
    root = tmp_path_factory.mktemp("push")
    catalog = write_catalog(root, lab)
    results = image_commands.push_images(options(catalog, lab, json=str(root / "report.json")))
    return catalog, results


def test_first_push_publishes_multi_arch_indexes_under_every_tag(
    published: tuple[Path, list[Result]], lab: Any
) -> None:
    catalog, results = published
    assert [r.action for r in results] == ["built", "built", "built"]
    client = target_client(lab)
    lock = json.loads((catalog.parent / "images.lock.json").read_text())["images"]
    for result in results:
        assert result.digest is not None
        for ref in result.tags:
            repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
            info = client.head_manifest(repo, tag)
            assert info is not None, ref
            assert info.digest == result.digest, ref
            assert info.media_type == "application/vnd.oci.image.index.v1+json"
            assert lock[ref]["digest"] == result.digest
            assert set(documents.platform_digests(client, repo, tag)) == {"linux/amd64", "linux/arm64"}
            held = read_labels(client, repo, tag)
            assert held is not None
            labels = held[1]
            assert labels["org.opencontainers.image.version"] == result.version
            assert labels["org.opencontainers.image.base.digest"] == result.source_digest
            assert labels["io.github.ci-images.recipe"].startswith("sha256:")
    report = json.loads((catalog.parent / "report.json").read_text())
    assert {r["action"] for r in report} == {"built"}
    assert set(report[0]) >= {
        "image",
        "variant",
        "version",
        "action",
        "reason",
        "tags",
        "digest",
        "previous_digest",
        "source_digest",
        "platforms",
        "duration_s",
        "ratelimit_remaining",
    }


def test_platform_on_a_push_never_replaces_a_published_index_with_fewer_platforms(
    published: tuple[Path, list[Result]], lab: Any
) -> None:
    catalog, results = published
    vault = next(r for r in results if r.image == "vault")
    before = len(lab.target.requests())
    with pytest.raises(UsageError) as refused:
        image_commands.push_images(options(catalog, lab, images=["vault"], platform=["linux/amd64"]))
    assert refused.value.exit_code == 2
    assert f"{vault.tags[0]} (would lose linux/arm64)" in refused.value.message
    assert "push without --platform" in (refused.value.fix or "")
    assert counts(lab.target.requests()[before:])["writes"] == 0
    repo, tag = vault.tags[0].split("/", 1)[1].rsplit(":", 1)
    assert set(documents.platform_digests(target_client(lab), repo, tag)) == {"linux/amd64", "linux/arm64"}


def test_base_layers_are_upstreams_own_blobs_copied_not_compressed(lab: Any, tmp_path: Path) -> None:
    """A build's layers from its base are upstream's compressed blobs (same digests), read from upstream."""
    catalog = write_catalog(tmp_path, lab)
    prefix = f"{lab.target.host}/reuse-{secrets.token_hex(3)}"  # a target that holds none of these blobs yet
    before = len(lab.upstream.requests())
    (result,) = image_commands.push_images(
        options(catalog, lab, images=["vault"], platform="linux/amd64", registry=prefix)
    )
    during = lab.upstream.requests()[before:]
    assert result.action == "built" and result.source_digest is not None
    client, upstream = target_client(lab), lab.upstream_client()
    repo = f"{prefix.split('/', 1)[1]}/vault"
    built = client.get_manifest(repo, documents.platform_digests(client, repo, "2.0.0")["linux/amd64"])
    base_digest = documents.platform_digests(upstream, "hashicorp/vault", result.source_digest)["linux/amd64"]
    base = upstream.get_manifest("hashicorp/vault", base_digest)
    assert built is not None and base is not None
    base_layers = [layer["digest"] for layer in json.loads(base[1])["layers"]]
    built_layers = [layer["digest"] for layer in json.loads(built[1])["layers"]]
    assert built_layers[: len(base_layers)] == base_layers
    # Copied from upstream, not compressed again (the lab's stand-ins are gzipped the way ci-images gzips, so equal
    # digests alone would not tell the two apart).
    for layer in base_layers:
        assert ("GET", f"/v2/hashicorp/vault/blobs/{layer}") in during


def test_a_push_leaves_only_the_catalogs_tags_on_this_target_in_the_lock_file(
    published: tuple[Path, list[Result]], lab: Any, tmp_path: Path
) -> None:
    """Records of another registry (a push to the lab with the repository's lock file) or of a version no longer in
    the catalog go; the catalog's other entries on this target stay, though --images left them out of this run."""
    catalog, first = published
    recorded = json.loads((catalog.parent / "images.lock.json").read_text())
    stale = {"127.0.0.1:5999/other/vault:2.0.0": {"digest": first[0].digest}}
    stale[f"{first[0].tags[0].rsplit(':', 1)[0]}:0.0.1"] = {"digest": first[0].digest}
    lock = tmp_path / "images.lock.json"
    lock.write_text(json.dumps({**recorded, "images": {**recorded["images"], **stale}}), encoding="utf-8")
    results = image_commands.push_images(options(catalog, lab, images=["vault"], lock=str(lock)))
    assert [r.action for r in results] == ["skipped"]
    assert json.loads(lock.read_text())["images"] == recorded["images"]


def test_second_run_with_nothing_changed_pulls_and_pushes_nothing(
    published: tuple[Path, list[Result]], lab: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    catalog, first = published
    upstream_before, target_before = len(lab.upstream.requests()), len(lab.target.requests())
    results = image_commands.push_images(options(catalog, lab))
    assert [r.action for r in results] == ["skipped"] * len(first)
    assert [r.digest for r in results] == [r.digest for r in first]
    upstream = counts(lab.upstream.requests()[upstream_before:])
    target = counts(lab.target.requests()[target_before:])
    assert upstream["manifest_get"] == 0
    assert target["writes"] == 0
    out, err = capfd.readouterr()
    assert lab.target.password not in out + err


_OPENED: list[str] = []
_WATCH: set[str] = set()


def _count_opens(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and args and str(args[0]) in _WATCH:
        _OPENED.append(str(args[0]))


sys.addaudithook(_count_opens)  # audit hooks stay for the process: it counts only while _WATCH names a file


def test_a_no_change_push_reads_the_catalog_once_and_asks_the_target_for_each_tag_once(
    published: tuple[Path, list[Result]], lab: Any
) -> None:
    """One Setup per command: the catalog is read once, and the plan asks the target about each tag once (a 401
    that asks for credentials is not an answer about the tag)."""
    catalog, first = published
    before = len(lab.target.answers())
    _OPENED.clear()
    _WATCH.add(str(catalog))
    try:
        results = image_commands.push_images(options(catalog, lab))
    finally:
        _WATCH.clear()
    assert [r.action for r in results] == ["skipped"] * len(first)
    assert [str(catalog)] == _OPENED
    asked = [uri for _, uri, status in lab.target.answers()[before:] if status != 401]
    for result in results:
        for ref in result.tags:
            repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
            assert asked.count(f"/v2/{repo}/manifests/{tag}") == 1, ref


def test_lock_only_records_every_tag_without_building(
    published: tuple[Path, list[Result]], lab: Any, tmp_path: Path
) -> None:
    catalog, first = published
    upstream_before, target_before = len(lab.upstream.requests()), len(lab.target.requests())
    lock_path = image_commands.write_lock_only(options(catalog, lab, lock=str(tmp_path / "lock.json")))
    lock = json.loads(lock_path.read_text())["images"]
    assert {ref: lock[ref]["digest"] for r in first for ref in r.tags} == {
        ref: r.digest for r in first for ref in r.tags
    }
    assert counts(lab.upstream.requests()[upstream_before:])["manifest_get"] == 0
    assert counts(lab.target.requests()[target_before:])["writes"] == 0


def test_changed_dockerfile_rebuilds_only_that_image(lab: Any, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, lab)
    # Whatever other tests left on the target, after this push it holds exactly this catalog's images.
    first = {r.key: r for r in image_commands.push_images(options(catalog, lab))}
    again = image_commands.push_images(options(catalog, lab))
    assert {r.action for r in again} == {"skipped"}
    dockerfile = tmp_path / "images" / "vault" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\nLABEL org.example.touched=yes\n")
    results = {r.key: r for r in image_commands.push_images(options(catalog, lab))}
    assert results["vault/plain/2.0.0"].action == "built"
    assert "recipe changed" in results["vault/plain/2.0.0"].reason
    assert results["vault/plain/2.0.0"].previous_digest == first["vault/plain/2.0.0"].digest
    assert results["vault/plain/2.0.0"].digest != first["vault/plain/2.0.0"].digest
    assert {k: r.action for k, r in results.items() if k != "vault/plain/2.0.0"} == {
        "local-kms/plain/3.11.7": "skipped",
        "local-kms/seeded/3.11.7": "skipped",
    }


def test_smoke_failure_keeps_previous_tags_and_others_publish(
    lab: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "images" / "broken"
    broken.mkdir(parents=True)
    (broken / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG MODE=good\nENV MODE=${MODE}\n"
    )
    extra = """  broken-kms:
    source: docker.io/nsmithuk/local-kms
    versions: ["3.11.7"]
    build: images/broken
    smoke: kms
"""
    catalog = write_catalog(tmp_path, lab, extra_images=extra)
    first = {r.key: r for r in image_commands.push_images(options(catalog, lab, images=["broken-kms"]))}
    good_digest = first["broken-kms/plain/3.11.7"].digest
    assert good_digest
    # Now the server never starts: the entrypoint is replaced by a command that prints and exits.
    (broken / "Dockerfile").write_text(
        'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nENTRYPOINT ["/bin/sh", "-c", "echo broken-on-purpose; exit 3"]\n'
    )
    vault_dockerfile = tmp_path / "images" / "vault" / "Dockerfile"
    vault_dockerfile.write_text(vault_dockerfile.read_text() + "\nLABEL org.example.round=2\n")
    with pytest.raises(PublishError) as raised:
        image_commands.push_images(
            options(catalog, lab, images=["broken-kms", "vault"], json=str(tmp_path / "r.json"))
        )
    assert raised.value.exit_code == 8  # one entry failed, the other was published
    report = {
        f"{r['image']}/{r['variant']}/{r['version']}": r
        for r in json.loads((tmp_path / "r.json").read_text())
    }
    assert report["broken-kms/plain/3.11.7"]["action"] == "failed"
    assert report["vault/plain/2.0.0"]["action"] == "built"
    client = target_client(lab)
    info = client.head_manifest(f"{PREFIX_PATH}/broken-kms", "3.11.7")
    assert info is not None and info.digest == good_digest
    _, err = capfd.readouterr()
    assert "broken-on-purpose" in err


def test_target_answering_429_is_retried(lab: Any, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, lab)
    state = {"manifest_puts": 0, "heads": 0}

    def throttle(method: str, path: str) -> bool:
        if method == "HEAD" and "/manifests/" in path:
            state["heads"] += 1
            return state["heads"] == 1
        if method == "PUT" and "/manifests/" in path:
            state["manifest_puts"] += 1
            return state["manifest_puts"] in (1, 2)
        return False

    with throttling_proxy(lab.target.host, lab.env()["SSL_CERT_FILE"], throttle=throttle) as (proxy, seen):
        opts = options(
            catalog, lab, images=["vault"], force=True, plain_http=True, registry=f"{proxy}/{PREFIX_PATH}"
        )
        results = image_commands.push_images(opts)
    assert [r.action for r in results] == ["built"]
    assert sum(1 for _, _, status in seen if status == 429) == 3


def _repush_standin(lab: Any, repo: str, version: str, marker: str) -> str:
    """Publish new content under an existing upstream tag, as an upstream re-release would; returns the new digest."""
    from ci_images.engine.client import Engine

    engine = Engine.connect()
    upstream = RegistryClient(lab.upstream.host)
    old = documents.platform_digests(upstream, repo, version)
    descriptors = []
    for platform, digest in sorted(old.items()):
        base = f"{lab.upstream.host}/{repo}@{digest}"
        engine.pull(base, platform=platform)
        context = Path(lab.workdir) / f"repush-{marker}-{platform.replace('/', '-')}"
        context.mkdir(parents=True, exist_ok=True)
        (context / "Dockerfile").write_text(f"FROM {base}\nLABEL org.example.rerelease={marker}\n")
        image = engine.build(
            context,
            tag=f"ci-images-test/repush:{marker}-{platform.split('/')[1]}",
            platform=platform,
            buildargs={},
            labels={},
        )
        descriptors.append(push_engine_image(engine, upstream, repo, image, platform=platform))
    body, media_type = documents.make_index(descriptors, {"org.opencontainers.image.version": version})
    return put_tags(upstream, repo, body, media_type, [version])


def test_upstream_rerelease_rebuilds_only_the_entries_built_from_it(lab: Any, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, lab)
    image_commands.push_images(options(catalog, lab))
    new_digest = _repush_standin(lab, "hashicorp/vault", "2.0.0", marker=tmp_path.name[-12:])
    results = {r.key: r for r in image_commands.push_images(options(catalog, lab))}
    assert results["vault/plain/2.0.0"].action == "built"
    assert "upstream changed" in results["vault/plain/2.0.0"].reason
    assert results["vault/plain/2.0.0"].source_digest == new_digest
    assert results["local-kms/plain/3.11.7"].action == "skipped"
    assert results["local-kms/seeded/3.11.7"].action == "skipped"


def test_mirror_mode_copies_smoke_tested_upstream_images(lab: Any, tmp_path: Path) -> None:
    extra = """  kms-mirror:
    source: docker.io/nsmithuk/local-kms
    versions: ["3.12.0"]
    smoke: kms
"""
    catalog = write_catalog(tmp_path, lab, extra_images=extra)
    first = image_commands.push_images(options(catalog, lab, images=["kms-mirror"]))
    assert [r.action for r in first] == ["mirrored"]
    # The catalog's platforms are all upstream has: a byte copy, upstream's own digest.
    assert first[0].digest == lab.standins["nsmithuk/local-kms"]["3.12.0"]
    assert first[0].smoked == ["linux/amd64", "linux/arm64"] or not lab_can_run_arm64()
    client = target_client(lab)
    assert set(documents.platform_digests(client, f"{PREFIX_PATH}/kms-mirror", "3.12.0")) == {
        "linux/amd64",
        "linux/arm64",
    }
    again = image_commands.push_images(options(catalog, lab, images=["kms-mirror"]))
    assert [r.action for r in again] == ["skipped"]


def test_a_dry_run_builds_and_smoke_tests_but_writes_nothing(lab: Any, tmp_path: Path) -> None:
    """--dry-run: builds and mirrors are smoke-tested as for real; the target gets no write and no lock file."""
    repo = f"kms-dry-{secrets.token_hex(3)}"
    extra = f"""  {repo}:
    source: docker.io/nsmithuk/local-kms
    versions: ["3.12.0"]
    smoke: kms
"""
    catalog = write_catalog(tmp_path, lab, extra_images=extra)
    target_before = len(lab.target.requests())
    fresh = f"{lab.target.host}/dry-{secrets.token_hex(3)}"  # nothing published there: --platform may narrow
    results = image_commands.push_images(
        options(catalog, lab, images=["vault", repo], platform=["linux/amd64"], dry_run=True, registry=fresh)
    )
    by_key = {r.key: r for r in results}
    built, mirror = by_key["vault/plain/2.0.0"], by_key[f"{repo}/plain/3.12.0"]
    assert (built.action, built.digest, built.smoked, built.dry_run) == ("built", None, ["linux/amd64"], True)
    assert built.reason.endswith("; dry run: built and smoke-tested, nothing pushed")
    assert (mirror.action, mirror.smoked) == ("built", ["linux/amd64"])
    assert mirror.reason.endswith("; dry run: upstream's images pulled and smoke-tested, nothing copied")
    assert mirror.as_record()["dry_run"] is True
    assert counts(lab.target.requests()[target_before:])["writes"] == 0
    assert not (tmp_path / "images.lock.json").exists()
    assert report.digests_output(results) == {}


def lab_can_run_arm64() -> bool:
    from ci_images.engine.client import Engine

    return Engine.connect().can_run("linux/arm64")


def test_low_upstream_pull_quota_stops_before_any_pull(lab: Any, tmp_path: Path) -> None:
    """Docker Hub's ratelimit headers below the threshold: nothing is pulled, built or pushed; exit code 4."""
    cert, key = lab.ca.issue_server_cert(tmp_path / "proxy-tls")
    headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "3;w=21600"}
    with throttling_proxy(lab.upstream.host, str(lab.ca_bundle), extra_headers=headers, tls=(cert, key)) as (
        mirror,
        seen,
    ):
        certs_d = Path("/etc/docker/certs.d") / mirror
        certs_d.mkdir(parents=True, exist_ok=True)
        shutil.copy(lab.ca.cert_path, certs_d / "ca.crt")
        try:
            catalog = write_catalog(tmp_path, lab)
            opts = options(catalog, lab, force=True, json=str(tmp_path / "r.json"), upstream_mirror=mirror)
            target_before = len(lab.target.requests())
            with pytest.raises(EntriesFailed) as raised:
                image_commands.push_images(opts)
        finally:
            shutil.rmtree(certs_d, ignore_errors=True)
    assert raised.value.exit_code == 4
    records = json.loads((tmp_path / "r.json").read_text())
    assert {r["action"] for r in records} == {"failed"}
    assert all(r["ratelimit_remaining"] == 3 for r in records)
    assert not [p for m, p, _ in seen if m == "GET" and "/manifests/" in p]
    written = [m for m, _ in lab.target.requests()[target_before:] if m in {"PUT", "POST", "PATCH", "DELETE"}]
    assert set(written) <= {
        "POST",
        "DELETE",
    }  # nothing stored: only the check's upload sessions, each cancelled
    assert written.count("POST") == written.count("DELETE")


def test_a_version_upstream_lacks_fails_alone(lab: Any, tmp_path: Path) -> None:
    extra = """  vault-missing:
    source: docker.io/hashicorp/vault
    versions: ["9.9.9"]
    build: images/vault
    smoke: vault
"""
    catalog = write_catalog(tmp_path, lab, extra_images=extra)
    with pytest.raises(PublishError):
        image_commands.push_images(
            options(catalog, lab, images=["vault-missing", "vault"], json=str(tmp_path / "r.json"))
        )
    records = {r["image"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert records["vault-missing"]["action"] == "failed"
    assert "hashicorp/vault:9.9.9 does not exist" in records["vault-missing"]["reason"]
    assert records["vault"]["action"] in {"built", "skipped"}


def test_variants_of_one_version_share_one_upstream_head_and_index_get(lab: Any, tmp_path: Path) -> None:
    """plain and seeded local-kms 3.11.7 come from one upstream tag: it costs one HEAD and one index GET."""
    catalog = write_catalog(tmp_path, lab)
    before = len(lab.upstream.requests())
    built = image_commands.build_images(options(catalog, lab, BUILD, images=["local-kms"]))
    assert [r.key for r in built] == ["local-kms/plain/3.11.7", "local-kms/seeded/3.11.7"]
    index = built[0].source_digest
    seen = lab.upstream.requests()[before:]
    assert [m for m, u in seen if u.endswith("/nsmithuk/local-kms/manifests/3.11.7")] == ["HEAD"]
    assert [m for m, u in seen if u.endswith(f"/nsmithuk/local-kms/manifests/{index}")] == ["GET"]


@pytest.mark.parametrize("door", ["module", "invoke"])
def test_a_target_that_keeps_answering_429_ends_with_exit_4_on_both_doors(
    lab: Any, tmp_path: Path, door: str
) -> None:
    """Retries are spent (Retry-After honoured), then the run stops with the rate-limit code, not 8 or 3."""
    catalog = write_catalog(tmp_path, lab)
    with throttling_proxy(lab.target.host, str(lab.ca_bundle), throttle=lambda method, path: True) as (
        proxy,
        seen,
    ):
        argv = [
            "push-images",
            "--catalog",
            str(catalog),
            "--images",
            "vault",
            "--registry",
            f"{proxy}/{PREFIX_PATH}",
            "--plain-http",
            "--lock",
            str(tmp_path / "lock.json"),
        ]
        done = run_door(door, argv, clean_env(**lab.env(), CI="true"), timeout=600)
    assert done.returncode == 4, done.stderr[-3000:]
    assert "429" in done.stderr and "gave up after" in done.stderr
    assert "Traceback" not in done.stderr
    assert lab.target.password not in done.stdout + done.stderr
    assert len([s for _, _, s in seen if s == 429]) >= 5  # every attempt of the retry policy was made
    assert not [
        m for m, _, _ in seen if m in {"PUT", "POST", "PATCH"}
    ]  # stopped at the plan: nothing written
