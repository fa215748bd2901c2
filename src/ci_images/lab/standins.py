"""The lab's stand-in images: offline-built images that answer like nsmithuk/local-kms and hashicorp/vault, one base
per kind and architecture (from ``lab/files/<kind>``) plus a metadata-only image per version on top.

Stand-ins are cached in the engine under a content hash of their inputs; the slow ingredients (Debian rootfs,
wheels, busybox, the OpenBao binary) are cached under ``$XDG_CACHE_HOME/ci-images/lab`` keyed the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker.errors

from ci_images.engine.client import Engine
from ci_images.errors import LabError
from ci_images.lab import assets as lab_assets
from ci_images.log import log

LAB_FILES = Path(__file__).parent / "files"
INPUTS_LABEL = "io.github.getsops.ci-images.lab.inputs"
IMAGE_PREFIX = "ci-images-lab"
# Real upstream repository -> stand-in recipe folder in lab/files/. library/vault is the official `vault` image
# (docker.io/vault): Vault releases before 1.14 are published there, not under hashicorp/vault.
STANDIN_KINDS: dict[str, str] = {
    "nsmithuk/local-kms": "local-kms",
    "hashicorp/vault": "vault",
    "library/vault": "vault",
    # Not a Docker Hub image: the lab's demo service, under a name a catalog can use (tests, README's example).
    "cilab/demo-service": lab_assets.DEMO_KIND,
}
# Stand-ins built from another recipe are pruned only when older than this: another checkout sharing the engine
# (a branch with other lab files) may still be using its own.
STALE_GRACE_S = 6 * 3600.0

# -- stand-in images ------------------------------------------------------------------------------------------------


def arch_of(platform: str) -> str:
    parts = platform.split("/")
    if len(parts) != 2 or parts[0] != "linux" or parts[1] not in lab_assets.DEBIAN_ARCH:
        raise LabError(f"no stand-ins for platform {platform!r}", fix="use linux/amd64 or linux/arm64")
    return parts[1]


def recipe_hash(kind: str, platform: str) -> str:
    """Content hash of everything a stand-in base is made from (files, pins, package lists, architecture)."""
    sha = hashlib.sha256(f"{kind}\0{platform}\0{lab_assets.RECIPE_VERSION}\n".encode())
    for path in sorted((LAB_FILES / kind).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            sha.update(path.relative_to(LAB_FILES).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    sha.update(lab_assets.recipe_inputs(kind, arch_of(platform)).encode())
    return sha.hexdigest()[:16]


def version_hash(kind: str, platform: str, version: str) -> str:
    sha = hashlib.sha256(f"{recipe_hash(kind, platform)}\0{version}\0".encode())
    sha.update((LAB_FILES / "version.Dockerfile").read_bytes())
    return sha.hexdigest()[:16]


def base_ref(kind: str, platform: str) -> str:
    return f"{IMAGE_PREFIX}/{kind}-base:{arch_of(platform)}-{recipe_hash(kind, platform)}"


def standin_ref(repo: str, version: str, platform: str) -> str:
    """The local engine reference of one stand-in version for one platform (unique per content hash)."""
    kind = kind_of(repo)
    return f"{IMAGE_PREFIX}/{kind}:{version}-{arch_of(platform)}-{version_hash(kind, platform, version)}"


def kind_of(repo: str) -> str:
    try:
        return STANDIN_KINDS[repo]
    except KeyError:
        raise LabError(f"no stand-in for {repo!r}", fix=f"use one of {sorted(STANDIN_KINDS)}") from None


def _image_exists(engine: Engine, ref: str) -> bool:
    try:
        engine.client.api.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_standin(engine: Engine, repo: str, version: str, platform: str) -> str:
    """Build (or reuse) the stand-in for ``repo:version`` on ``platform``; returns its local reference."""
    kind = kind_of(repo)
    ref = standin_ref(repo, version, platform)
    if _image_exists(engine, ref):
        return ref
    base = base_ref(kind, platform)
    if not _image_exists(engine, base):
        with log.group(f"lab: build {kind} stand-in base for {platform}"), _context_dir() as context:
            lab_assets.make_context(kind, arch_of(platform), LAB_FILES / kind, context)
            engine.build(
                context,
                tag=base,
                platform=platform,
                buildargs={},
                labels={INPUTS_LABEL: recipe_hash(kind, platform)},
            )
    with _context_dir() as context:
        shutil.copyfile(LAB_FILES / "version.Dockerfile", context / "Dockerfile")
        engine.build(
            context,
            tag=ref,
            platform=platform,
            buildargs={"BASE": base, "VERSION": version},
            labels={INPUTS_LABEL: version_hash(kind, platform, version)},
        )
    log.info(f"lab: built {ref}")
    return ref


@contextlib.contextmanager
def _context_dir() -> Iterator[Path]:
    # Under the cache folder (not /tmp): the kms context hard-links the cached rootfs, which needs one filesystem.
    tmp = lab_assets.assets_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="context-", dir=tmp) as context:
        yield Path(context)


def stale_standin(ref: str) -> bool:
    """True for a lab image whose recipe changed since it was built (``ref`` as the engine lists it)."""
    repository, _, tag = ref.rpartition(":")
    prefix, _, name = repository.partition("/")
    if prefix != IMAGE_PREFIX:
        return False
    if name.endswith("-base"):
        kind, (arch, _, digest) = name.removesuffix("-base"), tag.partition("-")
        known = kind in STANDIN_KINDS.values() and arch in lab_assets.DEBIAN_ARCH
        return not known or digest != recipe_hash(kind, f"linux/{arch}")
    version, _, rest = tag.rpartition("-")  # {version}-{arch}-{hash}: split the hash, then the architecture
    version, _, arch = version.rpartition("-")
    if name not in STANDIN_KINDS.values() or arch not in lab_assets.DEBIAN_ARCH or not version:
        return True
    return rest != version_hash(name, f"linux/{arch}", version)


def prune_stale_standins(engine: Engine, *, older_than_s: float = STALE_GRACE_S) -> list[str]:
    """Remove stand-in images built from another recipe more than ``older_than_s`` ago (each recipe change leaves
    ~300 MB per architecture). The grace period spares a checkout of another branch sharing this engine, whose
    stand-ins are "stale" only from this checkout's point of view."""
    removed = []
    now = time.time()
    for image in engine.client.images.list(name=f"{IMAGE_PREFIX}/*"):
        created = datetime.fromisoformat(str(image.attrs.get("Created", "")).split(".")[0]).replace(
            tzinfo=UTC
        )
        if now - created.timestamp() < older_than_s:
            continue
        for ref in image.tags:
            if stale_standin(ref):
                engine.remove_image(ref)
                removed.append(ref)
    if removed:
        log.info(f"lab: removed {len(removed)} stale stand-in image(s): {', '.join(removed)}")
    return removed
