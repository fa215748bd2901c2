"""The hermetic image lab: a CA, an "upstream" registry (Docker Hub's stand-in) and a "target" registry (GHCR's),
both TLS on loopback, and offline-built stand-ins (``standins.py``) pushed to upstream under the real names as
multi-arch indexes.

A filled upstream registry store is cached under ``$XDG_CACHE_HOME/ci-images/lab`` keyed by what it holds, so a
warm ``lab_up`` builds and pushes nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import docker.errors

from ci_images.engine.client import Engine
from ci_images.errors import LabError
from ci_images.lab import assets as lab_assets
from ci_images.lab.standins import (
    LAB_FILES,
    STANDIN_KINDS,
    arch_of,
    base_ref,
    ensure_standin,
    kind_of,
    prune_stale_standins,
    recipe_hash,
    standin_ref,
    version_hash,
)
from ci_images.log import log
from ci_images.loopback.certs import CertificateAuthority
from ci_images.loopback.server import RegistryServer, start_registry
from ci_images.oci import sha256_digest
from ci_images.registry import documents
from ci_images.registry.auth import Credentials
from ci_images.registry.client import RegistryClient
from ci_images.registry.documents import make_index
from ci_images.registry.push import push_engine_image

STATE_FILE = "lab.json"
TARGET_NAMESPACE = "getsops/ci-container-images"
VERSION_LABEL = "org.opencontainers.image.version"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
# "repo:version" -> the only platforms upstream has for that version (an old amd64-only release); every other
# stand-in has all of the lab's platforms.
Narrowed = Mapping[str, Sequence[str]]
SYSTEM_CA_BUNDLES = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pki/tls/certs/ca-bundle.crt"))


def put_tags(client: RegistryClient, repo: str, body: bytes, media_type: str, tags: Sequence[str]) -> str:
    """PUT one manifest or index under each tag (or only by digest when there are none); returns its digest. The
    tool itself never tags this way: its publisher moves tags only after everything they point at is in place."""
    digest = sha256_digest(body)
    for ref in tags or [digest]:
        client.put_manifest(repo, ref, body, media_type)
    return digest


def read_labels(client: RegistryClient, repo: str, ref: str) -> tuple[str, dict[str, str]] | None:
    """What ``ref`` holds now: (digest, labels), index annotations winning over the first image's config labels."""
    held = documents.read_held(client, repo, ref)
    return None if held is None else (held.digest, held.labels)


# -- the lab --------------------------------------------------------------------------------------------------------


@dataclass
class Lab:
    workdir: Path
    ca: CertificateAuthority
    upstream: RegistryServer
    target: RegistryServer
    ca_bundle: Path
    platforms: list[str]
    # repo -> version -> index digest in upstream
    standins: dict[str, dict[str, str]] = field(default_factory=dict)
    narrowed: dict[str, list[str]] = field(default_factory=dict)

    def platforms_of(self, repo: str, version: str) -> list[str]:
        return _platforms_of(repo, version, self.platforms, self.narrowed)

    @property
    def target_repository(self) -> str:
        return f"{self.target.host}/{TARGET_NAMESPACE}"

    def env(self) -> dict[str, str]:
        """What the tool needs to use this lab instead of Docker Hub and GHCR."""
        bundle = str(self.ca_bundle)
        return {
            "CI_IMAGES_UPSTREAM_MIRROR": self.upstream.host,
            "CI_IMAGES_REGISTRY": self.target_repository,
            "CI_IMAGES_REGISTRY_USER": self.target.username or "",
            "CI_IMAGES_REGISTRY_PASSWORD": self.target.password or "",
            "SSL_CERT_FILE": bundle,
            "REQUESTS_CA_BUNDLE": bundle,
            "CURL_CA_BUNDLE": bundle,
            "AWS_CA_BUNDLE": bundle,
        }

    def upstream_client(self) -> RegistryClient:
        return RegistryClient(self.upstream.host, ca_bundle=self.ca_bundle, role="upstream")

    def target_client(self) -> RegistryClient:
        creds = Credentials(self.target.username or "", self.target.password or "")
        return RegistryClient(self.target.host, credentials=creds, ca_bundle=self.ca_bundle)

    def save(self) -> None:
        state = {
            "workdir": str(self.workdir),
            "ca": {"cert_path": str(self.ca.cert_path), "key_path": str(self.ca.key_path)},
            "upstream": self.upstream.to_json(),
            "target": self.target.to_json(),
            "ca_bundle": str(self.ca_bundle),
            "platforms": self.platforms,
            "standins": self.standins,
            "narrowed": self.narrowed,
        }
        path = self.workdir / STATE_FILE
        path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)  # holds the target registry's password

    @classmethod
    def load(cls, workdir: Path) -> Lab | None:
        path = workdir / STATE_FILE
        if not path.exists():
            return None
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            workdir=Path(state["workdir"]),
            ca=CertificateAuthority(Path(state["ca"]["cert_path"]), Path(state["ca"]["key_path"])),
            upstream=RegistryServer.from_json(state["upstream"]),
            target=RegistryServer.from_json(state["target"]),
            ca_bundle=Path(state["ca_bundle"]),
            platforms=list(state["platforms"]),
            standins={k: dict(v) for k, v in state["standins"].items()},
            narrowed={k: list(v) for k, v in state.get("narrowed", {}).items()},
        )


def _platforms_of(repo: str, version: str, platforms: Sequence[str], narrowed: Narrowed) -> list[str]:
    return list(narrowed.get(f"{repo}:{version}", platforms))


def lab_up(
    workdir: Path,
    *,
    standins: Mapping[str, Sequence[str]],
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    narrowed: Narrowed | None = None,
    engine: Engine | None = None,
    reuse_store: bool = True,
) -> Lab:
    """Start (or reuse) the lab in ``workdir`` and make sure upstream holds every requested stand-in version.

    ``narrowed`` ("repo:version" -> platforms) gives a version fewer platforms, as an old upstream release may
    have; a version with one platform is pushed as that platform's manifest alone (what `docker push` of one
    build leaves), not as an index. ``reuse_store=False`` ignores a cached upstream store: stand-ins are then
    pushed from the engine's images.
    """
    narrowed_lists = {key: list(value) for key, value in (narrowed or {}).items()}
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for repo in standins:
        kind_of(repo)
    for platform in [*platforms, *(p for value in narrowed_lists.values() for p in value)]:
        arch_of(platform)
    existing = Lab.load(workdir)
    if existing is not None and existing.upstream.alive() and existing.target.alive():
        lab = existing
        log.info(f"lab: reusing registries {lab.upstream.host} (upstream) and {lab.target.host} (target)")
    else:
        if existing is not None:
            _stop(existing)
        engine = engine or Engine.connect()
        lab = _start(
            workdir, standins, list(platforms), narrowed_lists, reuse_store=reuse_store, engine=engine
        )
    missing = {
        repo: [v for v in versions if v not in lab.standins.get(repo, {})]
        for repo, versions in standins.items()
    }
    if any(missing.values()):
        engine = engine or Engine.connect()
        lab.narrowed.update(narrowed_lists)
        _push_standins(lab, engine, missing)
        lab.save()
    prune_stale_standins(engine or Engine.connect())
    lab.upstream.reset_requests()  # tests count the tool's upstream traffic, not the lab's own pushes
    lab.save()
    return lab


def lab_down(workdir: Path) -> bool:
    """Stop the lab's registries and drop their data; False when no lab state was found in ``workdir``."""
    lab = Lab.load(workdir.resolve())
    if lab is None:
        return False
    _stop(lab)
    (lab.workdir / STATE_FILE).unlink(missing_ok=True)
    return True


def _stop(lab: Lab) -> None:
    for server in (lab.upstream, lab.target):
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def _start(
    workdir: Path,
    standins: Mapping[str, Sequence[str]],
    platforms: list[str],
    narrowed: dict[str, list[str]],
    *,
    reuse_store: bool,
    engine: Engine,
) -> Lab:
    ca = CertificateAuthority.create(workdir / "ca")
    bundle = workdir / "ca-bundle.pem"
    bundle.write_bytes(_system_cas().rstrip(b"\n") + b"\n" + ca.cert_path.read_bytes())
    user, password = f"lab-{secrets.token_hex(3)}", secrets.token_urlsafe(18)
    log.add_mask(password)
    # A previously filled upstream store with exactly these stand-ins skips building and pushing entirely.
    image_ids = _standin_image_ids(engine, standins, platforms, narrowed)
    store_key = _store_key(standins, platforms, narrowed, image_ids or "")
    cached_store = lab_assets.assets_dir() / "upstream-store" / store_key
    upstream_dir = workdir / "upstream"
    seeded = bool(reuse_store and image_ids and lab_assets.clone_store(cached_store, upstream_dir / "data"))
    upstream = start_registry(upstream_dir, ca=ca)
    try:
        target = start_registry(workdir / "target", ca=ca, htpasswd=(user, password))
    except LabError:
        upstream.stop()
        raise
    lab = Lab(
        workdir=workdir,
        ca=ca,
        upstream=upstream,
        target=target,
        ca_bundle=bundle,
        platforms=platforms,
        narrowed=narrowed,
    )
    if seeded:
        state = json.loads((cached_store / "standins.json").read_text(encoding="utf-8"))
        lab.standins = _present(lab, {k: dict(v) for k, v in state.items()})
        log.info(f"lab: upstream seeded from the cached store {store_key}")
    lab.save()
    log.info(f"lab: upstream https://{upstream.host}, target https://{target.host} (CA {ca.cert_path})")
    return lab


def _present(lab: Lab, standins: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The stand-ins upstream really holds (a cached store could be damaged: what is missing gets pushed again)."""
    client = lab.upstream_client()
    try:
        return {
            repo: {
                version: digest
                for version, digest in versions.items()
                if (info := client.head_manifest(repo, version)) is not None and info.digest == digest
            }
            for repo, versions in standins.items()
        }
    finally:
        client.close()


def _standin_image_ids(
    engine: Engine, standins: Mapping[str, Sequence[str]], platforms: Sequence[str], narrowed: Narrowed
) -> str | None:
    """The engine's image ids of these stand-ins, or None when one is missing.

    Stand-in builds are not bit-for-bit reproducible (rootfs and pip timestamps), so a stored upstream is only valid
    for the exact images it was pushed from: their ids are part of the store key.
    """
    ids = []
    for repo in sorted(standins):
        for version in sorted(standins[repo]):
            for platform in sorted(_platforms_of(repo, version, platforms, narrowed)):
                try:
                    ids.append(
                        str(engine.client.api.inspect_image(standin_ref(repo, version, platform))["Id"])
                    )
                except docker.errors.ImageNotFound:
                    return None
    return ",".join(ids)


def _store_key(
    standins: Mapping[str, Sequence[str]], platforms: Sequence[str], narrowed: Narrowed, image_ids: str
) -> str:
    parts = [
        f"{repo}:{version}:{platform}:{version_hash(kind_of(repo), platform, version)}"
        for repo in sorted(standins)
        for version in sorted(standins[repo])
        for platform in sorted(_platforms_of(repo, version, platforms, narrowed))
    ]
    parts.append(image_ids)
    # The pushed bytes also depend on how ci_images.oci writes layers and manifests.
    parts.append(hashlib.sha256(Path(documents.__file__).read_bytes()).hexdigest())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _push_standins(lab: Lab, engine: Engine, standins: Mapping[str, Sequence[str]]) -> None:
    jobs = [
        (repo, version, platform)
        for repo, versions in standins.items()
        for version in versions
        for platform in lab.platforms_of(repo, version)
    ]
    # Ingredients are network/subprocess bound: fetch them side by side (the arm64 rootfs under QEMU is the slowest).
    kinds_arches = sorted({(kind_of(repo), arch_of(platform)) for repo, _, platform in jobs})
    with ThreadPoolExecutor(max_workers=4) as pool:
        for prepared in [
            pool.submit(lab_assets.prepare, kind, arch, LAB_FILES / kind) for kind, arch in kinds_arches
        ]:
            prepared.result()
    refs = {job: ensure_standin(engine, *job) for job in jobs}

    def push(repo: str, version: str) -> tuple[str, str, str]:
        client = lab.upstream_client()  # one client per thread: RegistryClient is not thread-safe
        try:
            manifests = [
                push_engine_image(engine, client, repo, refs[(repo, version, p)], platform=p)
                for p in lab.platforms_of(repo, version)
            ]
            if f"{repo}:{version}" in lab.narrowed and len(manifests) == 1:
                # An old single-platform release: the tag names the platform's manifest, no index.
                got = client.get_manifest(repo, manifests[0].digest)
                assert got is not None
                return repo, version, put_tags(client, repo, got[1], got[0].media_type, [version])
            body, media_type = make_index(manifests, {VERSION_LABEL: version})
            return repo, version, put_tags(client, repo, body, media_type, [version])
        finally:
            client.close()

    def push_repo(repo: str, versions: Sequence[str]) -> list[tuple[str, str, str]]:
        return [push(repo, version) for version in versions]

    # One thread per repository: versions of one repository share layers, each uploaded once.
    with (
        log.group(f"lab: push {len(jobs)} stand-in images to {lab.upstream.host}"),
        ThreadPoolExecutor(max_workers=len(standins) or 1) as pool,
    ):
        futures = [pool.submit(push_repo, repo, versions) for repo, versions in standins.items()]
        for future in futures:
            for repo, version, digest in future.result():
                lab.standins.setdefault(repo, {})[version] = digest
                log.info(f"lab: {lab.upstream.host}/{repo}:{version} -> {digest}")
    all_standins: dict[str, list[str]] = {repo: sorted(v) for repo, v in lab.standins.items()}
    lab_assets.save_store(
        lab.upstream.data_dir,
        lab_assets.assets_dir()
        / "upstream-store"
        / _store_key(
            all_standins,
            lab.platforms,
            lab.narrowed,
            _standin_image_ids(engine, all_standins, lab.platforms, lab.narrowed) or "",
        ),
        lab.standins,
    )


def _system_cas() -> bytes:
    for path in SYSTEM_CA_BUNDLES:
        if path.is_file():
            return path.read_bytes()
    return Path(certifi.where()).read_bytes()


__all__ = [  # the stand-in helpers live in standins.py; importable from here too
    "STANDIN_KINDS",
    "Lab",
    "base_ref",
    "ensure_standin",
    "lab_down",
    "lab_up",
    "recipe_hash",
    "standin_ref",
]
