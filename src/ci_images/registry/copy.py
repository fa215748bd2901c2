"""Registry-to-registry copy of one image, with no engine in the path: the index and every platform manifest are
written byte for byte (so they keep upstream's digests), blobs are copied by digest and streamed, never held whole.

Order: read the top manifest (the index, or a single-platform manifest); for each platform manifest the target
does not hold yet, read it and copy its blobs (HEAD on the target first: a blob it has is never sent again; the
same registry host mounts it from the source repository instead); write the platform manifests by digest, then the
top one by digest, and check that the target serves upstream's digest. No tag is written here: the publisher
writes the tags once the copy has passed its smoke tests.

Asked for fewer platforms than upstream's index lists, the copy writes a new index with only those platforms (and
the caller's annotations, which record upstream's digest): its digest then differs from upstream's, and the result
says so.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ci_images.errors import RegistryError
from ci_images.log import log
from ci_images.oci import (
    INDEX_MEDIA_TYPES,
    UNKNOWN_PLATFORM,
    canonical_json,
    join_platform,
    require_platforms,
    sha256_digest,
)
from ci_images.registry.client import RegistryClient
from ci_images.registry.pool import ClientPool, RateBudget

DEFAULT_JOBS = 4  # blobs in flight at once: enough to keep both registries busy on a small machine


@dataclass(frozen=True)
class Endpoint:
    """One side of a copy: the client pool to talk through, the registry's API host and the repository path."""

    pool: ClientPool
    host: str
    repo: str

    def client(self) -> RegistryClient:
        """This thread's client (a RegistryClient is not thread-safe)."""
        return self.pool.get(self.host)

    def __str__(self) -> str:
        return f"{self.host}/{self.repo}"


@dataclass
class CopyCounts:
    manifests_present: int = 0
    manifests_copied: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0


@dataclass(frozen=True)
class Copied:
    """What the target holds after a copy (by digest, untagged)."""

    digest: str
    media_type: str
    body: bytes = field(repr=False)  # the top manifest's bytes: the publisher writes them under the tags
    source_digest: str
    platforms: Mapping[str, str]  # image platform -> its manifest digest (what a smoke test pulls)
    counts: CopyCounts

    @property
    def exact(self) -> bool:
        """The same bytes as upstream's: the same digest."""
        return self.digest == self.source_digest

    def as_record(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "digest": self.digest,
            "upstream_digest": self.source_digest,
            "platforms": dict(self.platforms),
            **vars(self.counts),
        }


@dataclass(frozen=True)
class _Manifest:
    digest: str
    media_type: str
    platform: str


def _document(body: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{where}: the manifest is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise RegistryError(f"{where}: the manifest is not a JSON object")
    return document


def _media_type(document: Mapping[str, Any], fallback: str) -> str:
    return str(document.get("mediaType") or fallback)


@dataclass(frozen=True)
class _Top:
    """The manifest a copy starts from: an index and the manifests it lists, or a single image as its own one."""

    digest: str
    media_type: str
    body: bytes
    document: dict[str, Any]
    children: list[_Manifest]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES


def copy_image(
    source: Endpoint,
    source_digest: str,
    target: Endpoint,
    *,
    platforms: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    fetched: tuple[str, bytes] | None = None,
    budget: RateBudget | None = None,
    what: str = "copy",
    jobs: int = DEFAULT_JOBS,
) -> Copied:
    """Copy ``source@source_digest`` to ``target`` by digest; return what the target now holds.

    ``platforms`` (empty: all) narrows an index; ``annotations`` are added to a narrowed index. ``fetched`` is the
    source's top manifest (media type, bytes) when the caller has read it already. Every manifest GET on the
    source is spent from ``budget`` first (Docker Hub counts them as pulls); blob GETs are not.
    """
    copier = _Copier(source, target, budget=budget, what=what, jobs=jobs)
    top = _read_top(copier, source_digest, fetched or copier.fetch(source_digest))
    images = {m.platform for m in top.children if m.platform != UNKNOWN_PLATFORM}
    wanted = set(platforms) or images
    require_platforms(
        f"{source}@{source_digest}",
        wanted,
        images,
        fix="give this version the platforms upstream publishes (platforms: [...] on the version in the "
        "catalog, or platforms: all on a mirror)",
    )
    exact = images <= wanted
    # A byte copy keeps every manifest the index lists (attestations too); a narrowed index keeps only images.
    kept = top.children if exact else [m for m in top.children if m.platform in wanted]
    copier.copy_manifests(kept)
    body = _write_top(target, top, kept, exact, annotations or {})
    digest = sha256_digest(body)
    _check_served(target, digest, expected=source_digest if exact else digest)
    copied = Copied(
        digest=digest,
        media_type=top.media_type,
        body=body,
        source_digest=source_digest,
        platforms={m.platform: m.digest for m in kept if m.platform != UNKNOWN_PLATFORM},
        counts=copier.counts,
    )
    _tell(what, f"{source}@{source_digest}", target, copied)
    return copied


def _read_top(copier: _Copier, digest: str, fetched: tuple[str, bytes]) -> _Top:
    top_type, body = fetched
    where = f"{copier.source}@{digest}"
    document = _document(body, where)
    media_type = _media_type(document, top_type)
    if media_type in INDEX_MEDIA_TYPES:
        children = [
            _Manifest(
                str(entry["digest"]),
                str(entry.get("mediaType") or ""),
                join_platform(entry["platform"]) if entry.get("platform") else UNKNOWN_PLATFORM,
            )
            for entry in document.get("manifests") or []
        ]
        return _Top(digest, media_type, body, document, children)
    # A single-platform image (``docker push`` of one build): the top manifest is the platform manifest.
    source = copier.source
    config = _document(source.client().get_blob(source.repo, document["config"]["digest"]), where)
    copier.known[digest] = body
    return _Top(digest, media_type, body, document, [_Manifest(digest, media_type, join_platform(config))])


def _write_top(
    target: Endpoint, top: _Top, kept: Sequence[_Manifest], exact: bool, annotations: Mapping[str, str]
) -> bytes:
    """The top manifest's bytes on the target, by digest: upstream's own, or a narrowed index of its own."""
    if not top.is_index:
        return top.body  # written with the platform manifests, as its own
    if exact:
        target.client().put_manifest(target.repo, top.digest, top.body, top.media_type)
        return top.body
    digests = {m.digest for m in kept}
    narrowed = {
        **top.document,
        "manifests": [e for e in top.document["manifests"] if e["digest"] in digests],
        "annotations": {**(top.document.get("annotations") or {}), **annotations},
    }
    body = canonical_json(narrowed)
    target.client().put_manifest(target.repo, sha256_digest(body), body, top.media_type)
    return body


def _tell(what: str, where: str, target: Endpoint, copied: Copied) -> None:
    counts = copied.counts
    outcome = (
        "same digest" if copied.exact else f"narrowed to {', '.join(sorted(copied.platforms))}: new digest"
    )
    log.info(
        f"{what}: {where} -> {target}@{copied.digest} ({outcome}); blobs: {counts.blobs_uploaded} uploaded "
        f"({counts.bytes_uploaded} bytes), {counts.blobs_mounted} mounted, {counts.blobs_present} present; "
        f"platform manifests: {counts.manifests_copied} copied, {counts.manifests_present} present"
    )


def _check_served(target: Endpoint, digest: str, *, expected: str) -> None:
    """The integrity check: the target must serve the manifest under the digest the copy must have."""
    info = target.client().head_manifest(target.repo, digest)
    if info is None or info.digest != expected:
        raise RegistryError(
            f"integrity check failed: {target}@{digest} is served as {info.digest if info else 'nothing'}, "
            f"expected {expected}",
            fix="the target registry altered the manifest; no tag was moved; report it to the registry operator",
        )


class _Copier:
    """The manifests and blobs of one copy; blobs go in parallel, each thread with its own clients."""

    def __init__(
        self, source: Endpoint, target: Endpoint, *, budget: RateBudget | None, what: str, jobs: int
    ) -> None:
        self.source = source
        self.target = target
        self.budget = budget
        self.what = what
        self.jobs = max(1, jobs)
        self.counts = CopyCounts()
        self.known: dict[str, bytes] = {}  # manifests already read, by digest
        # One registry host on both sides: a blob is mounted from the source repository instead of sent again.
        self.mount_from = source.repo if source.host == target.host and source.repo != target.repo else None
        self._lock = threading.Lock()

    def fetch(self, digest: str) -> tuple[str, bytes]:
        if self.budget is not None:
            self.budget.spend(1, what=self.what)
        got = self.source.client().get_manifest(self.source.repo, digest)
        if got is None:
            raise RegistryError(
                f"{self.source}@{digest} does not exist (any more)", fix="run again: upstream moved meanwhile"
            )
        info, body = got
        if self.budget is not None and info.ratelimit is not None:
            self.budget.observe(info.ratelimit.remaining, info.ratelimit.limit)
        return info.media_type, body

    def copy_manifests(self, manifests: Sequence[_Manifest]) -> None:
        """Every manifest the target lacks: read it, copy its blobs, then write it by digest (blobs first: a
        registry refuses a manifest whose blobs it does not hold)."""
        target = self.target.client()
        todo: list[tuple[_Manifest, bytes, str]] = []
        blobs: dict[str, int] = {}
        for manifest in manifests:
            if target.head_manifest(self.target.repo, manifest.digest) is not None:
                self.counts.manifests_present += 1  # with its blobs: a registry only holds complete manifests
                continue
            media_type, body = (
                (manifest.media_type, self.known[manifest.digest])
                if manifest.digest in self.known
                else self.fetch(manifest.digest)
            )
            document = _document(body, f"{self.source}@{manifest.digest}")
            if _media_type(document, media_type) in INDEX_MEDIA_TYPES:
                raise RegistryError(
                    f"{self.source}@{manifest.digest} is an index inside an index, which ci-images does not copy",
                    fix="mirror the inner index's own reference instead",
                )
            for descriptor in [document["config"], *(document.get("layers") or [])]:
                blobs[str(descriptor["digest"])] = int(descriptor["size"])
            todo.append((manifest, body, _media_type(document, manifest.media_type or media_type)))
        # Largest first, so the long uploads start early and the small ones fill the gaps.
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="copy") as pool:
            list(pool.map(self._copy_blob, sorted(blobs.items(), key=lambda item: -item[1])))
        for manifest, body, media_type in todo:
            target.put_manifest(self.target.repo, manifest.digest, body, media_type)
            self.counts.manifests_copied += 1

    def _copy_blob(self, blob: tuple[str, int]) -> None:
        digest, size = blob

        def source() -> AbstractContextManager[Iterator[bytes]]:
            return self.source.client().open_blob(self.source.repo, digest, size=size)

        outcome = self.target.client().upload_blob_stream(
            self.target.repo, digest, size, source, mount_from=self.mount_from
        )
        with self._lock:
            if outcome == "present":
                self.counts.blobs_present += 1
            elif outcome == "mounted":
                self.counts.blobs_mounted += 1
            else:
                self.counts.blobs_uploaded += 1
                self.counts.bytes_uploaded += size
