"""The image lab itself: TLS registries, auth on the target, stand-ins under the real names, stand-in behaviour."""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import boto3
import docker.errors
import hvac
import pytest
import requests

from ci_images.engine.client import Engine
from ci_images.lab.lab import VERSION_LABEL, Lab, ensure_standin, lab_down, lab_up, read_labels, standin_ref
from ci_images.oci import OCI_INDEX, OCI_MANIFEST, free_loopback_port
from ci_images.registry.documents import platform_digests

from .conftest import LAB_NARROWED, LAB_PLATFORMS, LAB_STANDINS, unavailable

pytestmark = pytest.mark.integration

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
KMS_KEY_ID = "bc436485-5092-42b8-92a3-0aa8b93536dc"
SEED = f"""\
Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: {KMS_KEY_ID}
          Description: seeded by the lab test
        BackingKeys:
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
Aliases:
  - AliasName: alias/lab-test
    TargetKeyId: {KMS_KEY_ID}
"""
HEALTH_PROBE = (
    "wget -q -O /dev/null --header 'X-Amz-Target: TrentService.ListKeys' "
    "--header 'Content-Type: application/x-amz-json-1.1' --post-data '{}' \"http://127.0.0.1:${PORT}/\""
)


@contextmanager
def container(
    engine: Engine,
    image: str,
    *,
    platform: str,
    env: Mapping[str, str],
    files: Mapping[str, str] | None = None,
    **options: Any,
) -> Iterator[Any]:
    """A started container on the host network (the lab engine has no bridge); always removed afterwards."""
    name = f"ci-images-lab-test-{secrets.token_hex(5)}"
    created = engine.client.containers.create(
        image, name=name, platform=platform, environment=dict(env), network_mode="host", **options
    )
    try:
        if files:
            # put_archive rather than a bind mount: works whatever filesystem the engine sees.
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for path, text in files.items():
                    data = text.encode()
                    info = tarfile.TarInfo(path.lstrip("/"))
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
            created.put_archive("/", buffer.getvalue())
        created.start()
        yield created
    finally:
        with suppress(docker.errors.NotFound):
            created.remove(force=True)


def wait_for(check: Any, ctr: Any, *, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return check()
        except (requests.RequestException, OSError) as exc:
            last = exc
        ctr.reload()
        if ctr.status == "exited":
            break
        time.sleep(0.5)
    pytest.fail(f"container never answered ({last}); logs:\n{ctr.logs().decode(errors='replace')[-3000:]}")


def wait_exit(ctr: Any, timeout_s: float = 60) -> tuple[int, str]:
    result = ctr.wait(timeout=timeout_s)
    return int(result["StatusCode"]), ctr.logs().decode(errors="replace")


def kms_post(
    port: int, target: str, *, content_type: str = "application/x-amz-json-1.1"
) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/",
        data="{}",
        headers={"X-Amz-Target": f"TrentService.{target}", "Content-Type": content_type},
        timeout=5,
    )


# -- registries -----------------------------------------------------------------------------------------------------


def test_registries_answer_only_with_tls_from_the_lab_ca(lab: Lab) -> None:
    for server in (lab.upstream, lab.target):
        assert server.host.startswith("127.0.0.1:")
        assert requests.get(
            f"https://{server.host}/v2/", verify=str(lab.ca_bundle), timeout=5
        ).status_code in (
            200,
            401,
        )
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{server.host}/v2/", verify=SYSTEM_BUNDLE, timeout=5)
        # The engine trusts the lab CA for exactly this host.
        assert (
            Path("/etc/docker/certs.d") / server.host / "ca.crt"
        ).read_bytes() == lab.ca.cert_path.read_bytes()
    env = lab.env()
    assert env["CI_IMAGES_UPSTREAM_MIRROR"] == lab.upstream.host
    assert env["CI_IMAGES_REGISTRY"] == f"{lab.target.host}/getsops/ci-container-images"
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == env["AWS_CA_BUNDLE"] == str(lab.ca_bundle)


def test_target_enforces_basic_auth_and_upstream_is_anonymous(lab: Lab) -> None:
    url, verify = f"https://{lab.target.host}/v2/", str(lab.ca_bundle)
    anonymous = requests.get(url, verify=verify, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert (
        requests.get(url, verify=verify, timeout=5, auth=(lab.target.username or "", "wrong")).status_code
        == 401
    )
    good = requests.get(
        url, verify=verify, timeout=5, auth=(lab.target.username or "", lab.target.password or "")
    )
    assert good.status_code == 200
    assert requests.get(f"https://{lab.upstream.host}/v2/", verify=verify, timeout=5).status_code == 200


def test_standins_are_multi_arch_indexes_under_the_real_names(lab: Lab) -> None:
    client = lab.upstream_client()
    for repo, versions in LAB_STANDINS.items():
        assert set(versions) <= set(client.list_tags(repo))
        for version in versions:
            got = client.get_manifest(repo, version)
            assert got is not None
            assert got[0].digest == lab.standins[repo][version]
            platforms = LAB_NARROWED.get(f"{repo}:{version}", LAB_PLATFORMS)
            assert set(platform_digests(client, repo, version)) == set(platforms)
            # one platform: the manifest alone, as `docker push` of a single build leaves it
            assert got[0].media_type == (OCI_INDEX if len(platforms) > 1 else OCI_MANIFEST)
            labels = read_labels(client, repo, version)
            assert labels is not None
            assert labels[1][VERSION_LABEL] == version


def test_request_log_lists_method_and_uri(lab: Lab) -> None:
    lab.upstream.reset_requests()
    client = lab.upstream_client()
    client.head_manifest("hashicorp/vault", "2.0.0")
    client.get_manifest("nsmithuk/local-kms", "3.11.7")
    assert ("HEAD", "/v2/hashicorp/vault/manifests/2.0.0") in lab.upstream.requests()
    assert ("GET", "/v2/nsmithuk/local-kms/manifests/3.11.7") in lab.upstream.requests()
    assert all(method != "PUT" for method, _ in lab.upstream.requests())  # the lab's own pushes are forgotten


# -- local-kms stand-in ---------------------------------------------------------------------------------------------


def test_kms_standin_front_door_and_port(lab_engine: Engine, standin_images: dict[str, str]) -> None:
    port = free_loopback_port()
    platform = lab_engine.host_platform()
    with container(
        lab_engine, standin_images["nsmithuk/local-kms"], platform=platform, env={"PORT": str(port)}
    ) as c:
        listed = wait_for(lambda: kms_post(port, "ListKeys"), c)
        assert listed.status_code == 200
        assert "Keys" in listed.json()
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 405
        assert kms_post(port, "ListKeys", content_type="text/plain").status_code == 415
        assert requests.post(f"http://127.0.0.1:{port}/elsewhere", timeout=5).status_code == 404
        # The HEALTHCHECK images/local-kms declares: busybox wget POSTing ListKeys.
        code, output = c.exec_run(["sh", "-c", HEALTH_PROBE])
        assert code == 0, output


def test_kms_standin_seeds_fixed_keys_and_aliases(lab_engine: Engine, standin_images: dict[str, str]) -> None:
    port = free_loopback_port()
    env = {
        "PORT": str(port),
        "KMS_SEED_PATH": "/seeds/lab.yaml",
        "KMS_REGION": "us-west-1",
        "KMS_ACCOUNT_ID": "123",
    }
    image, platform = standin_images["nsmithuk/local-kms"], lab_engine.host_platform()
    with container(lab_engine, image, platform=platform, env=env, files={"/seeds/lab.yaml": SEED}) as c:
        wait_for(lambda: kms_post(port, "ListKeys").raise_for_status(), c)
        # Signed for another region: local-kms (and the stand-in) serve KMS_REGION whatever the client says.
        kms = boto3.client(
            "kms",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="eu-central-1",
            aws_access_key_id="lab",
            aws_secret_access_key="lab",
        )
        meta = kms.describe_key(KeyId=KMS_KEY_ID)["KeyMetadata"]
        assert meta["Arn"] == f"arn:aws:kms:us-west-1:123:key/{KMS_KEY_ID}"
        assert meta["Description"] == "seeded by the lab test"
        blob = kms.encrypt(KeyId="alias/lab-test", Plaintext=b"sops", EncryptionContext={"a": "b"})[
            "CiphertextBlob"
        ]
        plain = kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
        assert plain["Plaintext"] == b"sops"
        assert plain["KeyId"].endswith(KMS_KEY_ID)


# -- vault stand-in -------------------------------------------------------------------------------------------------


def test_vault_standin_honours_dev_token_and_listen_address(
    lab_engine: Engine, standin_images: dict[str, str]
) -> None:
    port = free_loopback_port()
    env = {
        "VAULT_DEV_ROOT_TOKEN_ID": "lab-root",
        "VAULT_DEV_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "SKIP_SETCAP": "1",
    }
    image, platform = standin_images["hashicorp/vault"], lab_engine.host_platform()
    assert lab_engine.image_labels(image)[VERSION_LABEL].startswith("2.")
    with container(lab_engine, image, platform=platform, env=env) as c:
        client = hvac.Client(url=f"http://127.0.0.1:{port}", token="lab-root")
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{port}/v1/sys/health", timeout=5).raise_for_status(), c
        )
        assert client.is_authenticated()
        assert not hvac.Client(url=f"http://127.0.0.1:{port}", token="other").is_authenticated()
        code, _ = c.exec_run(["sh", "-c", f"wget -q -O /dev/null http://127.0.0.1:{port}/v1/sys/health"])
        assert code == 0


def test_vault_2x_standin_needs_ipc_lock_or_skip_setcap(lab_engine: Engine, lab: Lab) -> None:
    platform = lab_engine.host_platform()
    v2 = ensure_standin(lab_engine, "hashicorp/vault", "2.0.0", platform)
    v1 = ensure_standin(lab_engine, "hashicorp/vault", "1.21.4", platform)
    with container(lab_engine, v2, platform=platform, env={}, command=["version"]) as c:
        code, logs = wait_exit(c)
        assert code != 0
        assert "requires the IPC_LOCK capability" in logs
    with container(lab_engine, v2, platform=platform, env={}, command=["version"], cap_add=["IPC_LOCK"]) as c:
        assert wait_exit(c)[0] == 0
    with container(lab_engine, v2, platform=platform, env={"SKIP_SETCAP": "true"}, command=["version"]) as c:
        assert wait_exit(c)[0] == 0
    with container(lab_engine, v1, platform=platform, env={}, command=["version"]) as c:
        code, logs = wait_exit(c)
        assert code == 0  # 1.x only warns and runs without mlock
        assert "Disabling IPC_LOCK" in logs


# -- caching and emulation ------------------------------------------------------------------------------------------


class NoBuildEngine(Engine):
    """The real engine, except that a build fails the test: a warm lab must not build."""

    def build(self, context: Path, **kwargs: Any) -> str:
        raise AssertionError(f"warm lab_up built {kwargs.get('tag')} from {context}")


def test_warm_lab_up_reuses_cached_standins(lab: Lab, lab_engine: Engine, tmp_path: Path) -> None:
    ids = {
        (repo, version, platform): lab_engine.image_attrs(standin_ref(repo, version, platform))["Id"]
        for repo, versions in LAB_STANDINS.items()
        for version in versions
        for platform in LAB_NARROWED.get(f"{repo}:{version}", LAB_PLATFORMS)
    }
    no_build = NoBuildEngine(lab_engine.client, network_mode=lab_engine.network_mode)
    # From the cached upstream store (everything), then from the engine's cached images (a subset: pushing is slow).
    subset = {"nsmithuk/local-kms": ["3.11.7"], "hashicorp/vault": ["2.0.0"]}
    for reuse_store, standins in ((True, LAB_STANDINS), (False, subset)):
        workdir = tmp_path / f"warm-{reuse_store}"
        warm = lab_up(
            workdir,
            standins=standins,
            platforms=LAB_PLATFORMS,
            narrowed=LAB_NARROWED,
            engine=no_build,
            reuse_store=reuse_store,
        )
        try:
            # Same inputs, same bytes: whether copied from the cached store or pushed again from the engine.
            assert warm.standins == {
                repo: {v: lab.standins[repo][v] for v in vs} for repo, vs in standins.items()
            }
            if reuse_store:  # copied from the store, not pushed: no write reached the upstream registry
                assert not [m for m, _ in warm.upstream.requests() if m in {"PUT", "POST", "PATCH"}]
        finally:
            lab_down(workdir)
    assert ids == {key: lab_engine.image_attrs(standin_ref(*key))["Id"] for key in ids}


def test_arm64_standins_run_under_qemu(lab: Lab, lab_engine: Engine) -> None:
    if not lab_engine.can_run("linux/arm64"):
        unavailable("this host cannot run linux/arm64 images (no QEMU binfmt handler for aarch64)")
    platform = "linux/arm64"
    vault = ensure_standin(lab_engine, "hashicorp/vault", "2.0.0", platform)
    kms = ensure_standin(lab_engine, "nsmithuk/local-kms", "3.11.7", platform)
    assert lab_engine.image_platform(vault) == lab_engine.image_platform(kms) == platform
    with container(lab_engine, vault, platform=platform, env={}, entrypoint=["uname", "-m"]) as c:
        assert wait_exit(c) == (0, "aarch64\n")
    port = free_loopback_port()
    with container(lab_engine, kms, platform=platform, env={"PORT": str(port)}) as c:
        assert wait_for(lambda: kms_post(port, "ListKeys"), c, timeout_s=180).status_code == 200
        assert c.exec_run(["uname", "-m"]).output == b"aarch64\n"
