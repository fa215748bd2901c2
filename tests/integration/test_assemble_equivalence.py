"""The assembly against the engine's own ``docker build`` of the same Dockerfile, on every platform the catalog has.

For every shipped Dockerfile and variant (images.yaml), and for a synthetic Dockerfile that uses every instruction
the assembly carries out, on amd64 and arm64, the engine builds FROM a lab stand-in (Engine.build, as run/build.py does) and the
assembly makes the same image from the base's manifest and config, read from the lab's upstream registry. The
assembled image is then pushed there by digest and pulled by the engine (which checks every diff_id), and both
must agree on the config fields a consumer sees and on every file the build added (path, type, mode, owner,
content: the build's own layers, read from ``docker save``).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import secrets
import shutil
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_images.assemble.dockerfile import read_dockerfile
from ci_images.assemble.image import PlatformImage, assemble_platform
from ci_images.engine.client import Engine
from ci_images.lab.lab import Lab
from ci_images.registry import documents
from ci_images.registry.client import RegistryClient
from tests.integration.conftest import STANDIN_VERSIONS

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EPOCH = 1_700_000_000
LABELS = {"org.opencontainers.image.version": "9.9.9", "org.example.assembled": "yes"}
CONFIG_FIELDS = (
    "Env",
    "ExposedPorts",
    "Healthcheck",
    "Labels",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "StopSignal",
    "Volumes",
)
ASSEMBLED_REPO = "ci-images-test/assembled"


def shipped_cases() -> list[Any]:
    """(image, upstream repo, build args) for every built entry and variant of the shipped catalog."""
    catalog = yaml.safe_load((REPO_ROOT / "images.yaml").read_text(encoding="utf-8"))
    cases = []
    for name, image in catalog["images"].items():
        if "build" not in image:
            continue
        repo = image["source"].removeprefix("docker.io/")
        variants = {
            "": {},
            **{k: v.get("build_args") or {} for k, v in (image.get("variants") or {}).items()},
        }
        for variant, args in variants.items():
            cases.append(
                pytest.param(image["build"], repo, args, id=f"{name}-{variant}" if variant else name)
            )
    return cases


# A Dockerfile with every instruction the assembly carries out, in the forms Docker 20.10's classic builder accepts
# (it refuses --chmod and the ${var-word} forms: unit tests cover those).
SYNTHETIC = r"""# syntax=docker/dockerfile:1
ARG BASE_IMAGE
ARG GREETING=hello
FROM ${BASE_IMAGE}
ARG GREETING
ARG APP_DIR=/srv/app
ARG UNSET
ARG EXTRA_PORT=7000
ENV APP_HOME=${APP_DIR:-/nowhere} \
    GREETING_TEXT="${GREETING} world" \
    OPTIONAL=${UNSET:+set} FALLBACK=${UNSET:-fallback} \
    ESCAPED=\$HOME LITERAL='$GREETING'
ENV LEGACY form with spaces
LABEL org.example.greeting="$GREETING" "org.example.spaced key"="a value"
EXPOSE 9000/udp 9001-9002 ${EXTRA_PORT}
WORKDIR $APP_HOME
WORKDIR sub
COPY --chown=1000:1000 files/ ./
COPY files/run.sh files/*.txt conf/
COPY ["files/notes.txt", "/opt/json form/"]
ADD files/plain.txt /opt/added.txt
COPY --chown=2000 files/tool.sh /usr/local/bin/tool
COPY files/sub /opt/tree
USER 1000:1000
VOLUME /data
VOLUME ["/cache", "/logs"]
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/usr/local/bin/tool"]
CMD echo "$GREETING_TEXT"
HEALTHCHECK --interval=1m30s --timeout=3s --retries=2 CMD ["/bin/true"]
"""


def normalize_modes(root: Path) -> None:
    """Files 0644 or 0755 by their owner's execute bit, directories 0755: what the assembly records whatever the
    checkout did, so the engine (which keeps the context's modes) sees the same."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)


def synthetic_context(root: Path) -> Path:
    files = root / "files"
    (files / "sub" / "deeper").mkdir(parents=True)
    (files / "empty").mkdir()
    (files / "secret").mkdir()
    (files / "run.sh").write_text("#!/bin/sh\necho run\n", encoding="utf-8")
    (files / "tool.sh").write_text('#!/bin/sh\nexec "$@"\n', encoding="utf-8")
    for name in ("a.txt", "b.txt", "notes.txt", "plain.txt"):
        (files / name).write_text(f"{name}\n", encoding="utf-8")
    (files / "sub" / "deep.txt").write_text("deep\n", encoding="utf-8")
    (files / "sub" / "deeper" / "deepest.bin").write_bytes(bytes(range(256)) * 40)
    (files / "debug.log").write_text("excluded\n", encoding="utf-8")
    (files / "secret" / "key").write_text("excluded\n", encoding="utf-8")
    (files / "link").symlink_to("run.sh")
    (root / ".dockerignore").write_text("# test\nfiles/*.log\nfiles/secret\n", encoding="utf-8")
    (root / "Dockerfile").write_text(SYNTHETIC, encoding="utf-8")
    normalize_modes(root)
    (files / "run.sh").chmod(0o755)
    (files / "tool.sh").chmod(0o755)
    return root


@dataclass(frozen=True)
class Base:
    ref: str
    repo: str
    manifest: bytes
    config: bytes


def read_base(lab: Lab, repo: str, platform: str) -> Base:
    """The stand-in base of ``repo`` for ``platform`` in the lab's upstream: its manifest and config bytes."""
    client = lab.upstream_client()
    try:
        index = client.get_manifest(repo, lab.standins[repo][STANDIN_VERSIONS[repo]])
        assert index is not None
        digest = (documents.index_platforms(index[1]) or {})[platform]
        got = client.get_manifest(repo, digest)
        assert got is not None
        config = client.get_blob(repo, json.loads(got[1])["config"]["digest"])
    finally:
        client.close()
    return Base(f"{lab.upstream.host}/{repo}@{digest}", repo, got[1], config)


@dataclass(frozen=True)
class FileEntry:
    kind: str
    mode: int
    uid: int
    gid: int
    content: str  # sha256 of a file, the target of a symlink, "" for a directory


def tar_entries(data: bytes) -> dict[str, FileEntry]:
    entries: dict[str, FileEntry] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            path = member.name.removeprefix("./").rstrip("/")
            assert ".wh." not in path, f"a build that only adds files whited out {path}"
            if member.isdir():
                entry = FileEntry("dir", member.mode & 0o7777, member.uid, member.gid, "")
            elif member.issym():
                entry = FileEntry("symlink", 0o777, member.uid, member.gid, member.linkname)
            else:
                assert member.isfile(), f"{path} is neither a file, a directory nor a symlink"
                extracted = tar.extractfile(member)
                assert extracted is not None
                entry = FileEntry(
                    "file",
                    member.mode & 0o7777,
                    member.uid,
                    member.gid,
                    hashlib.sha256(extracted.read()).hexdigest(),
                )
            entries[path] = entry
    return entries


def added_by_build(engine: Engine, image: str, base_config: bytes) -> dict[str, FileEntry]:
    """Every entry of the layers ``image`` has beyond its base's, from ``docker save`` (later layers win)."""
    base_diff_ids = set(json.loads(base_config)["rootfs"]["diff_ids"])
    layers: dict[str, bytes] = {}
    order: list[str] = []
    with tarfile.open(fileobj=_Chunks(engine.save(image)), mode="r|") as saved:
        for member in saved:
            extracted = saved.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            if member.name == "manifest.json":
                order = json.loads(extracted.read())[0]["Layers"]
            elif member.name.endswith("/layer.tar"):
                data = extracted.read()
                if "sha256:" + hashlib.sha256(data).hexdigest() not in base_diff_ids:
                    layers[member.name] = data
    added: dict[str, FileEntry] = {}
    for name in order:
        if name in layers:
            added.update(tar_entries(layers[name]))
    return added


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the engine's save stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = iter(chunks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def assembled_entries(image: PlatformImage) -> dict[str, FileEntry]:
    entries: dict[str, FileEntry] = {}
    for layer in image.layers:
        entries.update(tar_entries(gzip.decompress(layer.path.read_bytes())))
    return entries


def publish(lab: Lab, base: Base, image: PlatformImage) -> str:
    """Push the assembled image to the lab's upstream by digest (base layers mounted from the base's repository)."""
    client: RegistryClient = lab.upstream_client()
    try:
        for descriptor in image.base_layers:
            client.upload_blob_stream(
                ASSEMBLED_REPO,
                str(descriptor["digest"]),
                int(descriptor["size"]),
                _no_source,
                mount_from=base.repo,
            )
        for layer in image.layers:
            client.upload_blob(ASSEMBLED_REPO, layer.digest, layer.path)
        client.upload_blob(ASSEMBLED_REPO, image.config_digest, image.config)
        client.put_manifest(ASSEMBLED_REPO, image.manifest_digest, image.manifest, image.media_type)
    finally:
        client.close()
    return f"{lab.upstream.host}/{ASSEMBLED_REPO}@{image.manifest_digest}"


@contextlib.contextmanager
def _no_source() -> Iterator[Iterator[bytes]]:
    raise AssertionError("a base layer was not mounted from the base's repository")
    yield iter(())


def _empty_as_none(value: Any) -> Any:
    return value if value not in (None, "", [], {}) else None


def path_stat(engine: Engine, container: str, path: str) -> dict[str, Any]:
    """The engine's stat of ``path`` in ``container`` (HEAD /containers/ID/archive: no content is read)."""
    api: Any = engine.client.api
    resp = api.head(api._url("/containers/{0}/archive", container), params={"path": path})
    resp.raise_for_status()
    stat_json: dict[str, Any] = json.loads(base64.b64decode(resp.headers["X-Docker-Container-Path-Stat"]))
    return stat_json


@contextlib.contextmanager
def engine_image(engine: Engine, ref: str) -> Iterator[str]:
    try:
        yield ref
    finally:
        engine.remove_image(ref)


def check_equivalent(
    engine: Engine,
    lab: Lab,
    base: Base,
    context: Path,
    args: Mapping[str, str],
    workdir: Path,
    platform: str,
) -> None:
    build_args = {**args, "BASE_IMAGE": base.ref}
    engine.pull(base.ref, platform=platform)
    tag = f"ci-images-assemble-test/{context.name.lower()}:{secrets.token_hex(4)}"
    built = engine.build(
        context, tag=tag, platform=platform, buildargs=build_args, labels=LABELS, dockerfile="Dockerfile"
    )
    with engine_image(engine, tag):
        assembled = assemble_platform(
            read_dockerfile(context / "Dockerfile"),
            context,
            build_args=build_args,
            base_manifest=base.manifest,
            base_config=base.config,
            epoch=EPOCH,
            directory=workdir,
            labels=LABELS,
        )
        assert assembled.platform == platform
        ref = publish(lab, base, assembled)
        engine.pull(ref, platform=platform)  # the engine checks every layer against the config's diff_ids
        with engine_image(engine, ref):
            api: Any = engine.client.api
            theirs = api.inspect_image(built)["Config"]
            pulled = api.inspect_image(ref)["Config"]
            ours = json.loads(assembled.config)["config"]
            for name in CONFIG_FIELDS:
                assert _empty_as_none(ours.get(name)) == _empty_as_none(theirs.get(name)), name
                assert _empty_as_none(pulled.get(name)) == _empty_as_none(theirs.get(name)), name

            built_files = added_by_build(engine, built, base.config)
            our_files = assembled_entries(assembled)
            assert set(our_files) <= set(built_files), "the assembly wrote what the build did not"
            container = api.create_container(ref)["Id"]
            try:
                for path, entry in sorted(built_files.items()):
                    if path in our_files:
                        assert our_files[path] == entry, path
                        continue
                    # Not in the assembled layers: a parent directory the build created (MkdirAll: 0755 root) or
                    # copied up unchanged from the base; the engine must see the same directory in the assembly.
                    assert (entry.kind, entry.mode, entry.uid, entry.gid) == ("dir", 0o755, 0, 0), path
                    seen = path_stat(engine, container, "/" + path)
                    assert seen["mode"] & (1 << 31) and seen["mode"] & 0o7777 == 0o755, path
            finally:
                api.remove_container(container, force=True)


# Both platforms the catalog publishes. A RUN-free Dockerfile builds for arm64 on an amd64 engine without emulation;
# its files are then read from `docker save`, its config from the engine, and a container of it is only created.
PLATFORMS = ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(("build_dir", "repo", "args"), shipped_cases())
def test_shipped_dockerfiles_assemble_as_the_engine_builds(
    engine: Engine, lab: Lab, tmp_path: Path, build_dir: str, repo: str, args: dict[str, str], platform: str
) -> None:
    context = tmp_path / Path(build_dir).name
    shutil.copytree(REPO_ROOT / build_dir, context)
    normalize_modes(context)
    base = read_base(lab, repo, platform)
    check_equivalent(engine, lab, base, context, args, tmp_path / "layers", platform)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"GREETING": "hi there", "EXTRA_PORT": "7100"}, id="args"),
    ],
)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_supported_instruction_assembles_as_the_engine_builds(
    engine: Engine, lab: Lab, tmp_path: Path, args: dict[str, str], platform: str
) -> None:
    context = synthetic_context(tmp_path / "synthetic")
    base = read_base(lab, "hashicorp/vault", platform)
    check_equivalent(engine, lab, base, context, args, tmp_path / "layers", platform)
    assert list((tmp_path / "layers").iterdir())  # the COPY layers were written where asked


# What Docker 20.10's classic builder refuses but BuildKit builds: --chmod and the ${var-word} forms. No engine build
# to compare with here, so the engine checks what it is given: it pulls the assembled image, and a container of it
# shows BuildKit's modes and owners.
BUILDKIT_ONLY = r"""ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG UNSET
ENV DASH=${UNSET-dash} PLUS=${UNSET+plus} LAST=${PATH##*:} FIRST=${PATH%%:*}
COPY --chmod=0750 --chown=10:20 files/ /opt/chmod/
COPY --chmod=600 files/a.txt /opt/secret.txt
"""


def container_entries(engine: Engine, container: str, path: str) -> dict[str, FileEntry]:
    """The entries under ``path`` in ``container`` as the engine archives them (a small subtree only)."""
    api: Any = engine.client.api
    stream, _ = api.get_archive(container, path)
    return tar_entries(b"".join(stream))


def test_chmod_and_the_newer_expansions_reach_the_engine_as_buildkit_makes_them(
    engine: Engine, lab: Lab, tmp_path: Path
) -> None:
    context = tmp_path / "buildkit-only"
    (context / "files" / "sub").mkdir(parents=True)
    (context / "files" / "a.txt").write_text("a\n", encoding="utf-8")
    (context / "files" / "sub" / "b.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    (context / "Dockerfile").write_text(BUILDKIT_ONLY, encoding="utf-8")
    platform = engine.host_platform()
    base = read_base(lab, "hashicorp/vault", platform)
    assembled = assemble_platform(
        read_dockerfile(context / "Dockerfile"),
        context,
        build_args={"BASE_IMAGE": base.ref},
        base_manifest=base.manifest,
        base_config=base.config,
        epoch=EPOCH,
        directory=tmp_path / "layers",
    )
    ref = publish(lab, base, assembled)
    engine.pull(ref, platform=platform)
    with engine_image(engine, ref):
        api: Any = engine.client.api
        env = dict(item.partition("=")[::2] for item in api.inspect_image(ref)["Config"]["Env"])
        assert (env["DASH"], env["PLUS"], env["LAST"], env["FIRST"]) == (
            "dash",
            "",
            "/bin",
            "/usr/local/sbin",
        )
        container = api.create_container(ref)["Id"]
        try:
            tree = container_entries(engine, container, "/opt/chmod")
            secret = container_entries(engine, container, "/opt/secret.txt")
        finally:
            api.remove_container(container, force=True)
    assert {path: (e.kind, e.mode, e.uid, e.gid) for path, e in tree.items()} == {
        "chmod": ("dir", 0o750, 10, 20),
        "chmod/a.txt": ("file", 0o750, 10, 20),
        "chmod/sub": ("dir", 0o750, 10, 20),
        "chmod/sub/b.sh": ("file", 0o750, 10, 20),
    }
    assert {path: (e.kind, e.mode, e.uid, e.gid) for path, e in secret.items()} == {
        "secret.txt": ("file", 0o600, 0, 0)
    }
