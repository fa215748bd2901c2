"""Faults registries really produce, injected by a proxy in front of the upstream (which the engine pulls through too)
or the target: every class is retried and the run completes, or it fails cleanly; either way every tag then points
at a complete, smoke-tested index, and a tag move that stopped part-way is finished by the next run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ci_images.commands import images as image_commands
from ci_images.commands.options import PUSH, Options, parse_options
from ci_images.errors import CiImagesError
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.run.result import Result

from .conftest import vault_catalog
from .proxy import RESET, TOO_MANY, TRUNCATE, Fault, Request, fault_proxy, first, slow

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
Rule = Callable[[Request], Fault | None]


def manifest(method: str, *, engine: bool | None = None) -> Callable[[Request], bool]:
    def matches(request: Request) -> bool:
        return (
            request.method == method
            and "/manifests/" in request.path
            and (engine is None or request.from_engine is engine)
        )

    return matches


def blob_upload(request: Request) -> bool:
    return request.method == "PUT" and "/blobs/uploads/" in request.path


UPSTREAM_FAULTS: dict[str, tuple[Rule, dict[str, str]]] = {
    "429 with Retry-After": (first(2, TOO_MANY, manifest("HEAD")), {}),
    "429 without Retry-After, to the engine's pull": (
        first(2, Fault.status_code(429), manifest("GET", engine=True)),
        {},
    ),
    "503": (first(2, Fault.status_code(503), manifest("GET", engine=False)), {}),
    "truncated body": (first(1, TRUNCATE, manifest("GET", engine=False)), {}),
    "502 to the engine's pull": (first(1, Fault.status_code(502), manifest("GET", engine=True)), {}),
    "slower than the client's timeout": (first(1, slow(4), manifest("HEAD")), {"registry_timeout": "2"}),
}
TARGET_FAULTS: dict[str, tuple[Rule, dict[str, str]]] = {
    "429 without Retry-After": (first(2, Fault.status_code(429), manifest("PUT")), {}),
    "500": (first(1, Fault.status_code(500), manifest("GET")), {}),
    "502": (first(1, Fault.status_code(502), blob_upload), {}),
    "reset during a blob upload": (first(2, RESET, blob_upload), {}),
    "truncated body": (first(1, TRUNCATE, manifest("GET")), {}),
    "slower than the client's timeout": (first(1, slow(4), manifest("PUT")), {"registry_timeout": "2"}),
}


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return vault_catalog(tmp_path)


def options(lab: Any, catalog: Path, **given: Any) -> Options:
    env = {**lab.env(), "CI": "true"}
    env.pop("CI_IMAGES_REGISTRY", None)
    values = {"catalog": str(catalog), "lock": str(catalog.parent / "lock.json"), **given}
    parsed: Options = parse_options(PUSH, values, env)
    return parsed


def unique_target(lab: Any, catalog: Path) -> str:
    return f"{lab.target.host}/faults/{catalog.parent.name[-10:].lower().replace('_', '-')}"


@contextmanager
def upstream_proxy(lab: Any, tmp_path: Path, rule: Rule) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """TLS, trusted by the engine (certs.d) and by the tool, as a real Docker Hub mirror is."""
    cert, key = lab.ca.issue_server_cert(tmp_path / "proxy-tls")
    with fault_proxy(lab.upstream.host, str(lab.ca_bundle), fault=rule, tls=(cert, key)) as (host, seen):
        certs_d = Path("/etc/docker/certs.d") / host
        certs_d.mkdir(parents=True, exist_ok=True)
        shutil.copy(lab.ca.cert_path, certs_d / "ca.crt")
        try:
            yield host, seen
        finally:
            shutil.rmtree(certs_d, ignore_errors=True)


def assert_complete(lab: Any, results: list[Result], *, smoked: bool = True) -> None:
    """Every tag points at an index whose manifests, configs and layers all exist (and that this run smoke-tested)."""
    client = RegistryClient(
        lab.target.host, credentials=Credentials(lab.target.username, lab.target.password)
    )
    for result in results:
        if smoked:
            assert list(result.smoked) == ["linux/amd64"], result
        for ref in result.tags:
            repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
            got = client.get_manifest(repo, tag)
            assert got is not None and got[0].digest == result.digest, ref
            for entry in json.loads(got[1])["manifests"]:
                child = client.get_manifest(repo, entry["digest"])
                assert child is not None, entry
                document = json.loads(child[1])
                for blob in [document["config"], *document["layers"]]:
                    assert client.blob_exists(repo, blob["digest"]), blob


def faults_seen(seen: list[tuple[str, str, int]]) -> int:
    return sum(1 for _, _, status in seen if status in (0, -1, -2) or status >= 429)


@pytest.mark.parametrize("name", list(UPSTREAM_FAULTS))
def test_upstream_faults_are_retried_and_the_run_completes(
    name: str, lab: Any, catalog: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rule, extra = UPSTREAM_FAULTS[name]
    if (
        "engine's pull" in name
    ):  # a RUN step: the engine builds it, pulling its base (an assembly pulls nothing)
        with (catalog.parent / "images" / "vault" / "Dockerfile").open("a", encoding="utf-8") as dockerfile:
            dockerfile.write("RUN true\n")
    with upstream_proxy(lab, tmp_path, rule) as (mirror, seen):
        results = image_commands.push_images(
            options(lab, catalog, registry=unique_target(lab, catalog), upstream_mirror=mirror, **extra)
        )
    assert [r.action for r in results] == ["built"]
    assert faults_seen(seen) >= 1, seen
    assert "retry" in capfd.readouterr().err
    assert_complete(lab, results)


@pytest.mark.parametrize("name", list(TARGET_FAULTS))
def test_target_faults_are_retried_and_the_run_completes(
    name: str, lab: Any, catalog: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rule, extra = TARGET_FAULTS[name]
    path = unique_target(lab, catalog).split("/", 1)[1]
    with fault_proxy(lab.target.host, str(lab.ca_bundle), fault=rule) as (proxy, seen):
        results = image_commands.push_images(
            options(lab, catalog, registry=f"{proxy}/{path}", plain_http=True, **extra)
        )
    assert [r.action for r in results] == ["built"]
    assert faults_seen(seen) >= 1, seen
    assert "retry" in capfd.readouterr().err
    assert_complete(lab, results)


def test_a_target_that_keeps_failing_fails_cleanly_and_moves_no_tag(lab: Any, catalog: Path) -> None:
    path = unique_target(lab, catalog).split("/", 1)[1]
    always = first(10_000, Fault.status_code(503), manifest("PUT"))
    with (
        fault_proxy(lab.target.host, str(lab.ca_bundle), fault=always) as (proxy, _),
        pytest.raises(CiImagesError) as raised,
    ):
        image_commands.push_images(options(lab, catalog, registry=f"{proxy}/{path}", plain_http=True))
    assert raised.value.exit_code == 3
    client = RegistryClient(
        lab.target.host, credentials=Credentials(lab.target.username, lab.target.password)
    )
    assert client.list_tags(f"{path}/vault") == []


def test_a_tag_move_that_stops_part_way_is_reported_and_finished_by_the_next_run(
    lab: Any, catalog: Path
) -> None:
    """The version tag moves, then the registry refuses the aliases: the report names both sides, every tag still
    points at a complete index, and the next run sees the split and moves the rest."""
    path = unique_target(lab, catalog).split("/", 1)[1]
    refuse_aliases = first(
        10_000,
        Fault.status_code(503),
        lambda r: r.method == "PUT" and r.path.endswith(("/manifests/2.0", "/manifests/latest")),
    )
    with fault_proxy(lab.target.host, str(lab.ca_bundle), fault=refuse_aliases) as (proxy, _):
        opts = options(
            lab, catalog, registry=f"{proxy}/{path}", plain_http=True, json=str(catalog.parent / "r.json")
        )
        with pytest.raises(CiImagesError) as raised:
            image_commands.push_images(opts)
    assert raised.value.exit_code == 3
    (record,) = json.loads((catalog.parent / "r.json").read_text())
    prefix = f"{proxy}/{path}/vault"
    assert record["tags_moved"] == [f"{prefix}:2.0.0"]
    assert record["tags_not_moved"] == [f"{prefix}:2.0", f"{prefix}:latest"]
    assert "moved: " in record["error"] and "not moved: " in record["error"]
    again = image_commands.push_images(options(lab, catalog, registry=f"{lab.target.host}/{path}"))
    assert [(r.action, r.reason) for r in again] == [("retagged", "up to date; moving 2.0, latest")]
    assert_complete(lab, [*again], smoked=False)
