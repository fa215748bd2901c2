"""Which build-context paths a COPY or ADD source names, as the classic builder resolves them.

moby/moby ``builder/dockerfile/copy.go`` (calcCopyInfo, copyWithWildcards): a leading ``/`` and ``./`` are dropped, a
source with ``*``, ``?`` or ``[`` matches every context path (files and directories, at any depth) with Go's
``path.Match``, a directory stands for its contents, and a missing source fails the build. A source that is a
symlink is followed (it must stay inside the context); symlinks inside a copied directory stay symlinks.

Docker-free on purpose: the plan classifies Dockerfiles with it (``dockerfile.classify``); layers.py passes the
paths the docker SDK would send (.dockerignore applied).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ci_images.assemble.dockerfile import Blocker, Dockerfile, DockerfileError, NotAssemblable
from ci_images.assemble.recipe import CopyStep


def contains_wildcards(name: str) -> bool:
    """copy.go containsWildcards (Linux): an unescaped ``*``, ``?`` or ``[``."""
    i = 0
    while i < len(name):
        if name[i] == "\\":
            i += 2
            continue
        if name[i] in "*?[":
            return True
        i += 1
    return False


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """getEsc of Go's path.Match: one class character (maybe escaped); a bare ``-`` or ``]`` is an error."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("syntax error in pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("syntax error in pattern")
    if i + 1 >= len(pattern):
        raise ValueError("syntax error in pattern")
    return pattern[i], i + 1


def _class_regex(pattern: str, start: int) -> tuple[str, int]:
    """A ``[...]`` class of Go's path.Match as a regex class; returns it and the index after ``]``."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    parts: list[str] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and parts:
            return ("[^" if negate else "[") + "".join(parts) + "]", i + 1
        low, i = _class_char(pattern, i)
        high = low
        if pattern[i] == "-":
            high, i = _class_char(pattern, i + 1)
        parts.append(re.escape(low) + ("-" + re.escape(high) if high != low else ""))


def go_match(pattern: str, name: str) -> bool:
    """Go's path.Match: ``*`` and ``?`` never match ``/``, ``[^...]`` negates, ``\\`` escapes."""
    regex = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            regex += "[^/]*"
        elif ch == "?":
            regex += "[^/]"
        elif ch == "[":
            part, i = _class_regex(pattern, i)
            regex += part
            continue
        elif ch == "\\":
            i += 1
            if i >= len(pattern):
                raise ValueError("syntax error in pattern")
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(ch)
        i += 1
    return re.fullmatch(regex, name, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class Resolved:
    """One context path a source stands for: ``rel`` (relative to the context; "" is its root) after following a
    symlink, and ``name``, the base name a file copied into a directory gets."""

    rel: str
    is_dir: bool
    name: str


class ContextIndex:
    """The context's paths (those the engine would receive) and their kinds, from lstat."""

    def __init__(self, root: Path, paths: Iterable[str] | None = None) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        if paths is None:
            paths = self._walk()
        self.kinds: dict[str, str] = {"": "dir"}
        for given in paths:
            rel = posixpath.normpath(given.replace(os.sep, "/"))
            mode = (root / rel).lstat().st_mode
            self.kinds[rel] = (
                "dir"
                if stat.S_ISDIR(mode)
                else "symlink"
                if stat.S_ISLNK(mode)
                else "file"
                if stat.S_ISREG(mode)
                else "other"
            )
            parent = posixpath.dirname(rel)
            while parent and parent not in self.kinds:  # a directory excluded while a child is kept
                self.kinds[parent] = "dir"
                parent = posixpath.dirname(parent)
        # filepath.Walk's order: a directory, then its entries by name.
        self.ordered = sorted(self.kinds, key=lambda rel: rel.split("/") if rel else [])

    def _walk(self) -> list[str]:
        found: list[str] = []
        for directory, dirs, files in os.walk(self.root):
            base = Path(directory).relative_to(self.root)
            found.extend((base / name).as_posix() for name in [*dirs, *files])
        return found

    def descendants(self, rel: str) -> list[str]:
        """Every path under directory ``rel``, in walk order (parents before children)."""
        prefix = f"{rel}/" if rel else ""
        return [p for p in self.ordered if p and p.startswith(prefix) and p != rel]

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root


def _follow(dockerfile: Dockerfile, step: CopyStep, index: ContextIndex, rel: str) -> str:
    """A symlink source's target, relative to the context (it must stay inside)."""
    target = Path(os.path.realpath(index.path(rel)))
    try:
        inside = target.relative_to(index.real_root).as_posix()
    except ValueError:
        raise DockerfileError(
            f"{dockerfile.path}:{step.line}: {step.keyword} source {rel} is a symlink out of the build context",
            fix="copy the file itself into the context",
        ) from None
    inside = "" if inside == "." else inside
    if inside not in index.kinds:
        raise DockerfileError(
            f"{dockerfile.path}:{step.line}: {step.keyword} source {rel} links to {inside}, which is not in the build context",
            fix="check .dockerignore",
        )
    return inside


def _one(dockerfile: Dockerfile, step: CopyStep, index: ContextIndex, rel: str, name: str) -> Resolved:
    kind = index.kinds[rel]
    if kind == "symlink":
        rel = _follow(dockerfile, step, index, rel)
        kind = index.kinds[rel]
    if kind == "other":
        raise NotAssemblable(
            Blocker(
                dockerfile.path,
                step.line,
                step.keyword,
                f"copies {rel}, which is not a regular file, directory or symlink",
            )
        )
    return Resolved(rel, kind == "dir", name)


def resolve_sources(dockerfile: Dockerfile, step: CopyStep, index: ContextIndex) -> list[Resolved]:
    """What ``step``'s sources stand for, in the classic builder's order (each source in turn; a wildcard's
    matches in walk order). No match at all fails as the builder does."""
    found: list[Resolved] = []
    for source in step.sources:
        orig = source.removeprefix("/").removeprefix("./")
        if contains_wildcards(orig):
            try:
                matches = [rel for rel in index.ordered if rel and go_match(orig, rel)]
            except ValueError as exc:
                raise DockerfileError(
                    f"{dockerfile.path}:{step.line}: {step.keyword} source {source}: {exc}"
                ) from None
            found.extend(_one(dockerfile, step, index, rel, posixpath.basename(rel)) for rel in matches)
            continue
        rel = posixpath.normpath(orig) if orig else "."
        rel = "" if rel == "." else rel
        if rel == ".." or rel.startswith("../"):
            raise DockerfileError(
                f"{dockerfile.path}:{step.line}: {step.keyword} source {source} is outside the build context"
            )
        if rel not in index.kinds:
            raise DockerfileError(
                f"{dockerfile.path}:{step.line}: {step.keyword} failed: file not found in build context or excluded by "
                f".dockerignore: stat {rel}: file does not exist",
                fix=f"add {rel} to the build context (or stop excluding it in .dockerignore)",
            )
        found.append(_one(dockerfile, step, index, rel, posixpath.basename(orig.rstrip("/")) or rel))
    if not found:
        raise DockerfileError(
            f"{dockerfile.path}:{step.line}: {step.keyword} failed: no source files were specified"
        )
    return found


_PROBE = 64 * 1024


def _decompressed_head(head: bytes) -> bytes | None:
    """The first bytes of the decompressed stream, or None when ``head`` is not compressed (pkg/archive's
    DecompressStream knows gzip, bzip2, xz and zstd)."""
    import bz2  # the decompressors and tarfile load only for an ADD (the plan reads every Dockerfile)
    import lzma
    import zlib

    try:
        if head.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(wbits=47).decompress(head, 1024)
        if head.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(head, 1024)
        if head.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor().decompress(head, 1024)
    except (OSError, EOFError, zlib.error, lzma.LZMAError):
        return b""
    return None


def is_archive(path: Path) -> bool | None:
    """pkg/archive's test of an ADD source (copy.go isArchivePath): a tar header, maybe compressed. True, False,
    or None for zstd (it cannot be read here, so it may be one)."""
    import tarfile

    with path.open("rb") as f:
        head = f.read(_PROBE)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return None
    data = _decompressed_head(head)
    block = (head if data is None else data)[: tarfile.BLOCKSIZE]
    if len(block) < tarfile.BLOCKSIZE or block == bytes(tarfile.BLOCKSIZE):
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def archive_blocker(
    dockerfile: Dockerfile, context: Path, step: CopyStep, index: ContextIndex | None = None
) -> None:
    """Raise NotAssemblable when ADD names a local archive: Docker extracts it instead of copying the file."""
    index = index or ContextIndex(context)
    for resolved in resolve_sources(dockerfile, step, index):
        if resolved.is_dir:
            continue  # files inside a directory are copied as they are
        verdict = is_archive(index.path(resolved.rel))
        if verdict is not False:
            maybe = "" if verdict else " (zstd-compressed, maybe)"
            raise NotAssemblable(
                Blocker(
                    dockerfile.path,
                    step.line,
                    "ADD",
                    f"adds a local archive{maybe}, {resolved.rel}, which Docker extracts; COPY copies it as a file",
                )
            )
