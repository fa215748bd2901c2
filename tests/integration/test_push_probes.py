"""push-images with smoke tests declared in the catalog alone, end to end: the lab's demo service (busybox httpd,
served by the lab's upstream as docker.io/cilab/demo-service, an image this package has no module for) built, tested
and published once per probe type; then each probe type fails on a new build and blocks its entry's tags, naming the
probe, the image id and platform and why, while an entry whose probes pass publishes in the same run. The plugin is
found through its entry point, and a command probe's client image comes from Docker Hub through the upstream mirror
(with the upstream credentials where the mirror asks for them)."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci_images.commands import images as image_commands
from ci_images.commands.options import BUILD, PUSH, Options, parse_options
from ci_images.commands.setup import prepare
from ci_images.engine.client import Engine
from ci_images.errors import PublishError
from ci_images.lab.demo import DEMO_UPSTREAM, DEMO_VERSION, ensure_demo_service
from ci_images.lab.lab import Lab, put_tags
from ci_images.loopback.server import RegistryServer
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import make_index
from ci_images.registry.push import push_engine_image
from ci_images.run.build import local_ref
from ci_images.run.result import Result
from ci_images.smoke.plugins import plugin_names
from tests.integration.conftest import REPO_ROOT, unavailable

pytestmark = pytest.mark.integration

PREFIX_PATH = "probe-tests"
# As a project adds an image: its upstream's Dockerfile plus a HEALTHCHECK. The build args are what the tests break on
# purpose (empty: the service as it is); being build args, a change rebuilds the entry, and its probes then run.
DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG ROUND=
ARG DEMO_DELAY=
ARG DEMO_EXIT=
ARG DEMO_NO_HEALTH=
ENV DEMO_DELAY=${DEMO_DELAY} DEMO_EXIT=${DEMO_EXIT} DEMO_NO_HEALTH=${DEMO_NO_HEALTH}
LABEL org.example.round=${ROUND}
HEALTHCHECK --interval=1s --timeout=3s --retries=3 \\
    CMD port="${LISTEN:-${PORT:-8080}}"; wget -q -O /dev/null "http://127.0.0.1:${port##*:}/health" || exit 1
"""
CLIENT = f"docker.io/{DEMO_UPSTREAM}:{DEMO_VERSION}"  # the command probe's client: the service's own busybox
CHECK_HEALTH = 'wget -q -O - "http://$SERVICE_HOST:$SERVICE_PORT/health" | grep -qx ok'

# probe type: (its probes as the catalog writes them, the build arg that breaks it, what the failure must say)
PROBES: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "tcp": ("[{tcp: {timeout: 4}}]", {"DEMO_DELAY": "600"}, ["tcp on the service's port", "within 4 s"]),
    "http": (
        '[{http: {path: /health, body: "^ok$", timeout: 4}}]',
        {"DEMO_NO_HEALTH": "1"},
        ["http GET /health", "did not answer 200 with a body matching /^ok$/ within 4 s", "answered 404"],
    ),
    "healthcheck": (
        "[{healthcheck: {timeout: 6}}]",
        {"DEMO_NO_HEALTH": "1"},
        ["healthcheck (the engine's health status)", "did not report the container healthy within 6 s"],
    ),
    "log": (
        '[{log: {pattern: "demo-service: listening on ", timeout: 4}}]',
        {"DEMO_DELAY": "600"},
        ["log line matching /demo-service: listening on /", "no line of the container's output matched"],
    ),
    "command": (
        f"[tcp, {{command: {{image: {CLIENT}, argv: [sh, -c, '{CHECK_HEALTH}']}}}}]",
        {"DEMO_NO_HEALTH": "1"},
        [
            f"2/2 command ['sh', '-c', '{CHECK_HEALTH}'] in {CLIENT} of",
            f"in {CLIENT} (pulled as ",
            "exited 1",
        ],
    ),
    "plugin": (
        "[demo-http]",
        {"DEMO_EXIT": "5"},
        ["smoke probe demo-http of", "container exited (exit code 5)"],
    ),
}


def catalog_text(lab: Lab, platform: str, *, round_: int, broken: bool) -> str:
    """The demo image with one variant per probe type (and its plain variant: tcp then http); ``broken`` gives
    every probe-type variant the build arg that makes its probe fail, and short timeouts."""
    variants = ""
    for kind, (probes, breaks, _) in PROBES.items():
        args = {"ROUND": str(round_), **(breaks if broken else {})}
        variants += textwrap.indent(
            f"{kind}:\n  build_args: {json.dumps(args)}\n  smoke:\n"
            f'    port: 8080\n    port_env: {{LISTEN: "127.0.0.1:{{port}}"}}\n    timeout: 30\n'
            f"    probes: {probes}\n",
            "      ",
        )
    return f"""\
registry: {lab.target.host}/{PREFIX_PATH}
upstream_mirror: {lab.upstream.host}
platforms: [{platform}]
tags: ["{{version}}", "{{major}}"]
images:
  demo:
    source: docker.io/{DEMO_UPSTREAM}
    versions: ["{DEMO_VERSION}"]
    build: images/demo
    build_args: {{ROUND: "{round_}"}}
    smoke:
      port: 8080
      port_env: {{LISTEN: "127.0.0.1:{{port}}"}}
      timeout: 30
      probes: [tcp, {{http: {{path: /health, body: "^ok$"}}}}]
    variants:
{variants}"""


def options(
    lab: Lab, catalog: Path, command: str = PUSH, env: dict[str, str] | None = None, **given: Any
) -> Options:
    environment = {**lab.env(), "CI": "true", **(env or {})}
    environment.pop("CI_IMAGES_REGISTRY", None)  # the catalog names the target
    defaults = {"catalog": str(catalog)}
    if command == PUSH:
        defaults["lock"] = str(catalog.parent / "images.lock.json")
    parsed: Options = parse_options(command, {**defaults, **given}, environment)
    return parsed


def report(path: Path) -> dict[str, dict[str, Any]]:
    return {f"{r['image']}/{r['variant']}/{r['version']}": r for r in json.loads(path.read_text("utf-8"))}


@pytest.fixture(scope="module")
def plugins_installed() -> None:
    if "demo-http" not in plugin_names():
        unavailable("the test plugin package is not installed: run through `nox -s tests`")


@dataclass(frozen=True)
class Rounds:
    first: dict[str, Result]  # round 1: every probe type passes
    second: dict[str, dict[str, Any]]  # round 2's records: every probe-type variant broken, the plain one not
    tested: dict[str, str]  # round 2: the image id each entry's smoke test ran, per entry key
    platform: str


@pytest.fixture(scope="module")
def rounds(
    lab: Lab, engine: Engine, plugins_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rounds]:
    """Round 1 publishes every entry; round 2 rebuilds all of them (a build arg changed), every probe-type variant
    broken on purpose, and keeps the builds in the engine so the test can read the image ids that were tested."""
    if DEMO_UPSTREAM not in lab.standins:
        pytest.fail(
            f"the lab's upstream does not serve {DEMO_UPSTREAM} (tests/integration/conftest.py LAB_STANDINS)"
        )
    root = tmp_path_factory.mktemp("push-probes")
    (root / "images" / "demo").mkdir(parents=True)
    (root / "images" / "demo" / "Dockerfile").write_text(DOCKERFILE, "utf-8")
    catalog = root / "images.yaml"
    platform = engine.host_platform()
    mirrored_client = f"{lab.upstream.host}/{DEMO_UPSTREAM}:{DEMO_VERSION}"
    assert not engine.has_image(CLIENT) and not engine.has_image(mirrored_client)
    catalog.write_text(catalog_text(lab, platform, round_=1, broken=False), "utf-8")
    builds: dict[str, str] = {}
    try:
        first = {r.key: r for r in image_commands.push_images(options(lab, catalog))}
        # The command probe's client came by Docker Hub's name through the lab's upstream mirror, never as written.
        assert engine.has_image(mirrored_client) and not engine.has_image(CLIENT)
        catalog.write_text(catalog_text(lab, platform, round_=2, broken=True), "utf-8")
        opts = options(lab, catalog, json=str(root / "round2.json"), keep_images=True)
        with prepare(opts) as setup:
            builds = {e.key: local_ref(e, platform) for e in setup.entries}
        with pytest.raises(PublishError) as raised:
            image_commands.push_images(opts)
        assert raised.value.exit_code == 8  # some entries failed, the others went through
        tested = {key: str(engine.image_attrs(ref)["Id"]) for key, ref in builds.items()}
        yield Rounds(first, report(root / "round2.json"), tested, platform)
    finally:
        for ref in builds.values():
            if engine.has_image(ref):
                engine.remove_image(ref)
        forget_pulls(engine, f"{lab.upstream.host}/{DEMO_UPSTREAM}")


def forget_pulls(engine: Engine, repository: str) -> None:
    """Untag what the runs pulled from ``repository`` (the bases by digest, the client by tag): the registry is
    this test's, gone after it."""
    for image in engine.client.images.list(name=repository):
        for ref in [*image.attrs.get("RepoTags", []), *image.attrs.get("RepoDigests", [])]:
            if ref.startswith((f"{repository}:", f"{repository}@")):
                engine.remove_image(ref)


def held(lab: Lab, tags: Sequence[str]) -> dict[str, str | None]:
    """What each tag (``host/repo:tag``) holds on the target now."""
    client = RegistryClient(
        lab.target.host, credentials=Credentials(lab.target.username or "", lab.target.password or "")
    )
    try:
        found = {}
        for ref in tags:
            repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
            info = client.head_manifest(repo, tag)
            found[ref] = info.digest if info is not None else None
        return found
    finally:
        client.close()


KEYS = {kind: f"demo/{kind}/{DEMO_VERSION}" for kind in PROBES}


@pytest.mark.parametrize("kind", list(PROBES))
def test_each_probe_type_passes_and_publishes(kind: str, rounds: Rounds, lab: Lab) -> None:
    result = rounds.first[KEYS[kind]]
    assert (result.action, result.smoked) == ("built", [rounds.platform])
    assert result.digest is not None
    assert set(held(lab, result.tags).values()) == {result.digest}


@pytest.mark.parametrize("kind", list(PROBES))
def test_a_failing_probe_moves_no_tag_and_says_which_image_and_why(
    kind: str, rounds: Rounds, lab: Lab
) -> None:
    published = rounds.first[KEYS[kind]]
    record = rounds.second[KEYS[kind]]
    assert (record["action"], record["exit_code"], record["smoke_tested"]) == ("failed", 7, [])
    # Every tag still holds round 1's digest: the new build was never published.
    assert held(lab, published.tags) == dict.fromkeys(published.tags, published.digest)
    error = record["error"]
    image_id = rounds.tested[KEYS[kind]]
    assert f"({rounds.platform}, image id {image_id[:19]})" in error, error
    for text in PROBES[kind][2]:
        assert text in error, error


def test_an_entry_whose_probes_pass_publishes_in_the_same_run(rounds: Rounds, lab: Lab) -> None:
    key = f"demo/plain/{DEMO_VERSION}"
    before, after = rounds.first[key], rounds.second[key]
    assert (after["action"], after["smoke_tested"]) == ("built", [rounds.platform])
    assert after["digest"] not in (None, before.digest)
    assert set(held(lab, after["tags"]).values()) == {after["digest"]}


# -- a client image through a mirror that asks for credentials ---------------------------------------------------------


def test_a_docker_hub_client_image_comes_through_the_mirror_with_the_upstream_credentials(
    engine: Engine, auth_registry: RegistryServer, tmp_path: Path
) -> None:
    """A mirror that answers nobody without a login (the engine has none for it): the entry's base and the command
    probe's client (another Docker Hub repository) are pulled from it with CI_IMAGES_UPSTREAM_USER/PASSWORD."""
    platform = engine.host_platform()
    user, password = auth_registry.username or "", auth_registry.password or ""
    client = RegistryClient(auth_registry.host, credentials=Credentials(user, password))
    demo = ensure_demo_service(engine, platform, healthcheck=False)
    try:
        for repo in (DEMO_UPSTREAM, "cilab/demo-client"):
            manifest = push_engine_image(engine, client, repo, demo, platform=platform)
            body, media_type = make_index([manifest], {})
            put_tags(client, repo, body, media_type, [DEMO_VERSION])
    finally:
        client.close()
    wanted = f"docker.io/cilab/demo-client:{DEMO_VERSION}"
    pulled = f"{auth_registry.host}/cilab/demo-client:{DEMO_VERSION}"
    assert not engine.has_image(wanted) and not engine.has_image(pulled)
    (tmp_path / "images" / "demo").mkdir(parents=True)
    (tmp_path / "images" / "demo" / "Dockerfile").write_text(DOCKERFILE, "utf-8")
    catalog = tmp_path / "images.yaml"
    catalog.write_text(
        f"""\
platforms: [{platform}]
images:
  demo:
    source: docker.io/{DEMO_UPSTREAM}
    versions: ["{DEMO_VERSION}"]
    build: images/demo
    smoke:
      port: 8080
      port_env: {{LISTEN: "127.0.0.1:{{port}}"}}
      timeout: 30
      probes:
        - tcp
        - command: {{image: "{wanted}", argv: [sh, -c, '{CHECK_HEALTH}']}}
""",
        "utf-8",
    )
    env = {
        "CI_IMAGES_UPSTREAM_MIRROR": auth_registry.host,
        "CI_IMAGES_UPSTREAM_USER": user,
        "CI_IMAGES_UPSTREAM_PASSWORD": password,
    }
    try:
        (built,) = image_commands.build_images(
            parse_options(BUILD, {"catalog": str(catalog)}, env), smoke=True
        )
        assert (built.action, built.smoked) == ("built", [platform])
        assert engine.has_image(pulled) and not engine.has_image(wanted)
        # The engine asked the mirror for the client by its tag, and was let in.
        answers = [
            (m, status)
            for m, uri, status in auth_registry.answers()
            if uri.startswith("/v2/cilab/demo-client/")
        ]
        assert ("HEAD", 200) in answers or ("GET", 200) in answers, answers
    finally:
        for repo in (DEMO_UPSTREAM, "cilab/demo-client"):
            forget_pulls(engine, f"{auth_registry.host}/{repo}")


# -- README's example, as it is shipped ------------------------------------------------------------------------------


def test_the_readme_example_publishes_from_its_declared_probes_alone(
    lab: Lab, engine: Engine, tmp_path: Path
) -> None:
    """examples/demo-service (README, "Adding an image"), pushed as README says: every platform built, smoke-tested
    (arm64 under QEMU where the host can run it) and published; the next push skips it."""
    shutil.copytree(REPO_ROOT / "examples" / "demo-service", tmp_path, dirs_exist_ok=True)
    catalog = tmp_path / "images.yaml"
    target = f"{lab.target.host}/readme-example"
    try:
        (result,) = image_commands.push_images(options(lab, catalog, registry=target))
        runnable = [p for p in ("linux/amd64", "linux/arm64") if engine.can_run(p)]
        assert (result.action, result.platforms, result.smoked) == (
            "built",
            ("linux/amd64", "linux/arm64"),
            runnable,
        )
        assert set(held(lab, result.tags).values()) == {result.digest}
        (again,) = image_commands.push_images(options(lab, catalog, registry=target))
        assert again.action == "skipped"
    finally:
        forget_pulls(engine, f"{lab.upstream.host}/{DEMO_UPSTREAM}")
