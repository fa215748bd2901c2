"""One deterministic gzip layer per COPY/ADD: the same context gives the same bytes on any machine.

What goes in, and where, is the classic builder's (moby/moby ``builder/dockerfile/copy.go`` performCopyForInfo,
``internals.go`` normalizeDest): a directory source copies its contents into the destination; a file goes into a
destination that ends in ``/`` or is a directory known to exist (``/``, a working directory, a directory an earlier
COPY made), else to the destination path itself; more than one source needs a destination ending in ``/``. A
directory copy writes its destination directory too unless that is known to exist (CopyWithTar creates a missing
one, 0755, owned as ``--chown`` says, and leaves an existing one alone). The context is what the docker SDK sends to the engine: ``.dockerignore``
applied by ``docker.utils.build.exclude_paths``, then ``.dockerignore`` and the Dockerfile dropped when a pattern
matches them, as the daemon does (``builder/remotecontext/detect.go`` removeDockerfile).

What is fixed so that neither the checkout nor the umask changes a byte:
- entries sorted by path; every mtime is the ``epoch`` passed in (SOURCE_DATE_EPOCH or the commit's time);
- owner 0:0 (names empty) unless ``--chown=UID[:GID]``;
- modes as git keeps them: a file is 0755 when its owner may execute it, else 0644; a directory 0755; a symlink
  0777; ``--chmod`` (BuildKit's, octal) replaces the mode of every file and directory copied;
- gzip without a name, mtime 0, level GZIP_LEVEL; tar in PAX format (plain ustar headers unless a name is long).
  The diff_id (the tar's digest) depends on nothing else; the gzip bytes also depend on the deflate implementation
  Python links: zlib (Debian, Ubuntu, python.org builds) gives these digests; zlib-ng (Fedora 40 on) may not.
Parent directories of a destination are not written: an engine that applies the layer creates missing ones as
0755 root:root, as the builder's MkdirAll does, and leaves existing ones (the base's ``/tmp``, a user's home) as
they are, which a written entry would overwrite. Unlike the builder, ``--chown`` does not reach such new parents.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from docker.utils.build import PatternMatcher, exclude_paths

from ci_images.assemble.dockerfile import Dockerfile, DockerfileError
from ci_images.assemble.recipe import CopyStep, clean_path
from ci_images.assemble.sources import ContextIndex, archive_blocker, resolve_sources

GZIP_LEVEL = 6  # fixed, as registry/push.py: another level gives other bytes, hence other digests
FILE_MODE, EXEC_MODE, DIR_MODE, LINK_MODE = 0o644, 0o755, 0o755, 0o777
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    """A written layer: the gzip blob at ``path`` (named by its digest), its diff_id (sha256 of the tar), its
    digest and size (of the gzip blob: what a manifest lists)."""

    path: Path
    diff_id: str
    digest: str
    size: int


@dataclass(frozen=True)
class LayerEntry:
    path: str  # inside the image, no leading "/"
    kind: str  # "dir", "file" or "symlink"
    mode: int
    uid: int
    gid: int
    source: Path | None = None  # a file's content
    linkname: str = ""


def dockerignore_patterns(context: Path) -> list[str]:
    """The .dockerignore lines as docker.api.build reads them (stripped; blanks and comments dropped)."""
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return []
    lines = [line.strip() for line in ignore.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def context_paths(context: Path, dockerfile: str = "Dockerfile") -> frozenset[str]:
    """The context paths the engine receives for a build of ``context`` with ``dockerfile`` (relative to it)."""
    patterns = dockerignore_patterns(context)
    included = set(exclude_paths(str(context), list(patterns), dockerfile=dockerfile))
    if patterns:
        matcher = PatternMatcher(patterns)
        matcher.patterns.pop()  # its own "!.dockerignore": the daemon matches without it
        for special in (".dockerignore", dockerfile):
            if matcher.matches(special):
                included.discard(special)
    return frozenset(included)


def normalized_mode(kind: str, st_mode: int, chmod: int | None) -> int:
    """The mode a layer records (see the module docstring): the checkout's mode bits and the umask do not count."""
    if kind == "symlink":
        return LINK_MODE
    if chmod is not None:
        return chmod
    if kind == "dir":
        return DIR_MODE
    return EXEC_MODE if st_mode & stat.S_IXUSR else FILE_MODE


def _image_path(path: str) -> str:
    return posixpath.normpath("/" + path).lstrip("/")


def _ancestors(path: str) -> list[str]:
    found = []
    while path not in ("", "/"):
        path = posixpath.dirname(path)
        found.append(path)
    return found


def layer_entries(
    dockerfile: Dockerfile, step: CopyStep, index: ContextIndex, known_dirs: set[str]
) -> list[LayerEntry]:
    """The entries ``step`` writes, sorted by path (a later source wins over an earlier one at the same path).
    ``known_dirs`` (absolute, clean) are directories certain to exist; the step's own directories are added."""
    resolved = resolve_sources(dockerfile, step, index)
    if len(resolved) > 1 and not step.dest.endswith("/"):
        raise DockerfileError(
            f"{dockerfile.path}:{step.line}: When using {step.keyword} with more than one source file, the destination "
            "must be a directory and end with a /",
            fix=f"write the destination as {step.dest.rstrip('/')}/",
        )
    uid, gid = step.chown or (0, 0)
    dest = clean_path(step.dest)
    entries: dict[str, LayerEntry] = {}

    def add(image_path: str, rel: str) -> None:
        st = index.path(rel).lstat()
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        entries[_image_path(image_path)] = LayerEntry(
            path=_image_path(image_path),
            kind=kind,
            mode=normalized_mode(kind, st.st_mode, step.chmod),
            uid=uid,
            gid=gid,
            source=index.path(rel) if kind == "file" else None,
            linkname=str(index.path(rel).readlink()) if kind == "symlink" else "",
        )

    for source in resolved:
        if source.is_dir:
            if dest not in known_dirs:
                entries[_image_path(dest)] = LayerEntry(
                    _image_path(dest), "dir", normalized_mode("dir", 0, step.chmod), uid, gid
                )
            for rel in index.descendants(source.rel):
                sub = rel[len(source.rel) + 1 :] if source.rel else rel
                add(posixpath.join(dest, sub), rel)
        elif step.dest.endswith("/") or dest in known_dirs:
            add(posixpath.join(dest, source.name), source.rel)
        else:
            add(dest, source.rel)
    for entry in entries.values():
        if entry.kind == "dir":
            known_dirs.add("/" + entry.path)
        known_dirs.update("/" + parent if parent else "/" for parent in _ancestors(entry.path))
    return [entries[path] for path in sorted(entries)]


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Digesting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: _Writable) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def write_layer(entries: Sequence[LayerEntry], *, epoch: int, directory: Path) -> Layer:
    """Write ``entries`` as a gzip tar layer into ``directory`` (as ``sha256-HEX.tar.gz``)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".partial", delete=False) as raw:
        try:
            blob = _Digesting(raw)
            with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=blob, mtime=0) as gz:
                diff = _Digesting(gz)
                with tarfile.open(
                    fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
                ) as tar:
                    for entry in entries:
                        _add(tar, entry, epoch)
        except BaseException:
            Path(raw.name).unlink(missing_ok=True)
            raise
    digest = "sha256:" + blob.sha256.hexdigest()
    path = directory / f"sha256-{blob.sha256.hexdigest()}.tar.gz"
    Path(raw.name).replace(path)
    return Layer(path=path, diff_id="sha256:" + diff.sha256.hexdigest(), digest=digest, size=blob.size)


def _add(tar: tarfile.TarFile, entry: LayerEntry, epoch: int) -> None:
    info = tarfile.TarInfo(entry.path)
    info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, epoch
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, entry.linkname
        tar.addfile(info)
    else:
        assert entry.source is not None
        with entry.source.open("rb") as f:
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)


def build_layers(
    dockerfile: Dockerfile,
    context: Path,
    copies: Sequence[CopyStep],
    *,
    epoch: int,
    directory: Path,
    dockerfile_name: str = "Dockerfile",
) -> list[Layer]:
    """One layer per COPY/ADD of ``copies`` (config.evaluate's), in order, written into ``directory``.
    ``dockerfile_name`` is the Dockerfile's path relative to ``context`` (the engine always receives it)."""
    index = ContextIndex(context, context_paths(context, dockerfile_name))
    known: set[str] = set()
    layers = []
    for step in copies:
        known.update(step.known_dirs)
        if step.keyword == "ADD":
            archive_blocker(dockerfile, context, step, index)
        entries = layer_entries(dockerfile, step, index, known)
        layers.append(write_layer(entries, epoch=epoch, directory=directory))
    return layers
