"""Platform names as images and the kernel spell them, and whether this host can run a foreign one (QEMU binfmt)."""

from __future__ import annotations

from pathlib import Path

from ci_images.errors import EngineError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


# docker/OCI architecture names <-> kernel (uname -m / QEMU binfmt) names.
_KERNEL_ARCH = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "386": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


_OCI_ARCH = {kernel: oci for oci, kernel in _KERNEL_ARCH.items()} | {"armv7l": "arm", "i686": "386"}


def oci_arch(kernel_arch: str) -> str:
    """``x86_64`` -> ``amd64``: the engine reports the kernel's name, images and platforms use the OCI name."""
    return _OCI_ARCH.get(kernel_arch, kernel_arch)


def kernel_arch(platform: str) -> str:
    """``linux/arm64`` -> ``aarch64``: the name QEMU's binfmt handler is registered under."""
    parts = platform.split("/")
    if len(parts) < 2 or parts[0] != "linux" or not parts[1]:
        raise EngineError(f"unsupported platform {platform!r}", fix="use the form linux/<arch>[/<variant>]")
    return _KERNEL_ARCH.get(parts[1], parts[1])


def binfmt_enabled(arch: str, binfmt_dir: Path = BINFMT_DIR) -> bool:
    """True when a QEMU handler for ``arch`` (kernel name) is registered and enabled, globally and by itself."""
    handler = binfmt_dir / f"qemu-{arch}"
    status = binfmt_dir / "status"
    try:
        handler_text = handler.read_text(encoding="ascii")
        # The global switch is absent when binfmt_misc is mounted without it (some containers): treat as on.
        global_on = not status.exists() or status.read_text(encoding="ascii").strip() == "enabled"
    except OSError:
        return False
    first_line = handler_text.splitlines()[0].strip() if handler_text else ""
    return global_on and first_line == "enabled"


def same_os_arch(a: str, b: str) -> bool:
    """``linux/arm64/v8`` and ``linux/arm64`` name the same platform for our purposes."""
    return a.split("/")[:2] == b.split("/")[:2]
