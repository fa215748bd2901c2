"""Publishing: the one step that changes the target registry's images and tags. Dry runs swap in a publisher that
only tells.

Per built entry: upload each platform's image by digest (no tag is written), store the multi-platform index by
digest, then move every tag to it, the version tag first. Per mirrored entry: copy upstream's image into the target
by digest (``stage_copy``: no tag is written), and once it has passed its smoke tests, move its tags
(``publish_copy``). Tags therefore move only once everything they point at is in place, and every tag always points
at a complete index. When moving stops part-way (a registry error, an interrupt), TagsPartlyMoved names the tags
that moved and those that did not; the next run's plan sees the split and moves the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ci_images.errors import Cancelled, CiImagesError, RegistryError, TagsPartlyMoved
from ci_images.log import log
from ci_images.oci import OCI_INDEX, sha256_digest
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.plan.recipe import BASE_NAME_LABEL, BUILT_LABEL, RECIPE_LABEL, SOURCE_DIGEST_LABEL
from ci_images.registry import documents
from ci_images.registry.client import RegistryClient
from ci_images.registry.copy import Copied, Endpoint, copy_image
from ci_images.registry.pool import ClientPool, RateBudget
from ci_images.registry.push import BaseLayers, push_engine_image
from ci_images.run.result import RacedTag

if TYPE_CHECKING:
    from ci_images.engine.client import Engine
    from ci_images.run.assemble import Assembled

PreviousDigests = dict[str, str | None]


class Publisher(Protocol):
    def publish(
        self,
        entry: Entry,
        decision: Decision,
        images: Mapping[str, str],
        bases: Mapping[str, BaseLayers] | None = None,
    ) -> tuple[str | None, PreviousDigests]:
        """Upload ``images`` (platform -> engine image) and point every tag of ``entry`` at their index; ``bases``
        (platform -> upstream base) lets base layers go up as upstream's own blobs."""
        ...

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        """Point the tags of ``entry`` that do not hold ``digest`` at it."""
        ...

    def stage_copy(self, entry: Entry, decision: Decision, fetched: tuple[str, bytes]) -> Copied | None:
        """Copy upstream's image of a mirror entry into the target by digest, without tags; None: nothing copied.

        ``fetched`` is upstream's top manifest (media type, bytes), already read by the run."""
        ...

    def publish_copy(self, entry: Entry, decision: Decision, copied: Copied) -> tuple[str, PreviousDigests]:
        """Point every tag of ``entry`` at what stage_copy copied."""
        ...

    def read_back(self, entry: Entry, digest: str, tags: Sequence[str]) -> dict[str, RacedTag]:
        """The ``tags`` this run pointed at ``digest``, read again: those another writer moved meanwhile (tag
        reference -> what it holds now)."""
        ...

    def stage_assembled(self, entry: Entry, decision: Decision, assembled: Assembled) -> bool:
        """Upload an assembled entry's platforms and index by digest, without tags; False: nothing uploaded."""
        ...

    def publish_index(self, entry: Entry, decision: Decision, index: bytes) -> tuple[str, PreviousDigests]:
        """Point every tag of ``entry`` at ``index`` (an OCI index stage_assembled uploaded)."""
        ...


class RegistryPublisher:
    def __init__(
        self,
        engine: Callable[[], Engine],
        target: ClientPool,
        cancel: threading.Event | None = None,
        *,
        upstream: ClientPool | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        self._engine = engine
        self._target = target
        self._cancel = cancel or threading.Event()
        self._upstream = upstream
        self._budget = budget

    def _check(self, what: str) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"interrupted before {what}", fix="run again: this entry's tags did not move")

    def _move_tags(
        self,
        client: RegistryClient,
        entry: Entry,
        digest: str,
        body: bytes,
        media_type: str,
        tags: Sequence[str],
    ) -> None:
        """PUT the index under each tag in order; a stop part-way says which tags moved and which did not."""
        moved: list[str] = []
        for index, tag in enumerate(tags):
            rest = [entry.target.with_tag(t) for t in tags[index:]]
            if self._cancel.is_set():
                if not moved:
                    self._check("moving its tags")
                raise TagsPartlyMoved(
                    f"{entry.key}: interrupted while moving tags",
                    moved=[entry.target.with_tag(t) for t in moved],
                    not_moved=rest,
                    exit_code=Cancelled.exit_code,
                )
            try:
                client.put_manifest(entry.target.path, tag, body, media_type)
            except CiImagesError as exc:
                if not moved:
                    raise
                raise TagsPartlyMoved(
                    f"{entry.key}: moving tags stopped: {exc.message}",
                    moved=[entry.target.with_tag(t) for t in moved],
                    not_moved=rest,
                    exit_code=exc.exit_code,
                ) from exc
            moved.append(tag)
            log.info(f"{entry.key}: moved {entry.target.with_tag(tag)} -> {digest}")

    def publish(
        self,
        entry: Entry,
        decision: Decision,
        images: Mapping[str, str],
        bases: Mapping[str, BaseLayers] | None = None,
    ) -> tuple[str | None, PreviousDigests]:
        client = self._target.get(entry.target.api_host)
        engine = self._engine()
        descriptors = []
        for platform in entry.platforms:
            self._check(f"uploading {platform}")
            log.info(f"{entry.key}: uploading {platform} to {entry.target}")
            descriptors.append(
                push_engine_image(
                    engine,
                    client,
                    entry.target.path,
                    images[platform],
                    platform=platform,
                    base=(bases or {}).get(platform),
                )
            )
        annotations = {k: v for k, v in engine.image_labels(images[entry.platforms[0]]).items() if v}
        # What the next plan compares.
        if decision.recipe:
            annotations[RECIPE_LABEL] = decision.recipe
        if decision.source_digest:
            annotations[SOURCE_DIGEST_LABEL] = decision.source_digest
        annotations[BUILT_LABEL] = "engine"
        body, media_type = documents.make_index(descriptors, annotations)
        previous: PreviousDigests = {tag: decision.current.tag_digests.get(tag) for tag in entry.tags}
        digest = client.put_manifest(
            entry.target.path, sha256_digest(body), body, media_type
        )  # complete, untagged
        self._move_tags(client, entry, digest, body, media_type, entry.tags)
        return digest, previous

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        client = self._target.get(entry.target.api_host)
        got = client.get_manifest(entry.target.path, digest)
        if got is None:
            raise RegistryError(
                f"{entry.target.with_digest(digest)} vanished while retagging", fix="run again"
            )
        info, body = got
        stale = [tag for tag in entry.tags if tag_digests.get(tag) != digest]
        self._move_tags(client, entry, digest, body, info.media_type, stale)
        return {tag: tag_digests.get(tag) for tag in stale}

    def stage_copy(self, entry: Entry, decision: Decision, fetched: tuple[str, bytes]) -> Copied | None:
        assert self._upstream is not None and decision.source_digest is not None
        self._check("copying")
        # A narrowed index gets its own digest: it records what it was made from, for the next plan to compare.
        annotations = {
            BASE_NAME_LABEL: entry.source_ref,
            SOURCE_DIGEST_LABEL: decision.source_digest,
            **({RECIPE_LABEL: decision.recipe} if decision.recipe else {}),
        }
        log.info(f"{entry.key}: copying {entry.pull.with_digest(decision.source_digest)} to {entry.target}")
        return copy_image(
            Endpoint(self._upstream, entry.pull.api_host, entry.pull.path),
            decision.source_digest,
            Endpoint(self._target, entry.target.api_host, entry.target.path),
            platforms=entry.platforms,
            annotations=annotations,
            fetched=fetched,
            budget=self._budget,
            what=entry.key,
        )

    def publish_copy(self, entry: Entry, decision: Decision, copied: Copied) -> tuple[str, PreviousDigests]:
        client = self._target.get(entry.target.api_host)
        previous: PreviousDigests = {tag: decision.current.tag_digests.get(tag) for tag in entry.tags}
        digest = sha256_digest(copied.body)
        self._move_tags(client, entry, digest, copied.body, copied.media_type, entry.tags)
        return digest, previous

    def stage_assembled(self, entry: Entry, decision: Decision, assembled: Assembled) -> bool:
        from ci_images.registry.assembled import upload_assembled

        assert self._upstream is not None
        self._check("uploading")
        log.info(f"{entry.key}: uploading {', '.join(assembled.platforms)} to {entry.target} by digest")
        counts = upload_assembled(
            assembled.images,
            assembled.index,
            source=Endpoint(self._upstream, entry.pull.api_host, entry.pull.path),
            target=Endpoint(self._target, entry.target.api_host, entry.target.path),
        )
        log.info(
            f"{entry.key}: {entry.target.with_digest(assembled.digest)} stored untagged ({counts.blobs_uploaded} "
            f"blobs uploaded, {counts.blobs_mounted} mounted, {counts.blobs_present} present)"
        )
        return True

    def publish_index(self, entry: Entry, decision: Decision, index: bytes) -> tuple[str, PreviousDigests]:
        client = self._target.get(entry.target.api_host)
        previous: PreviousDigests = {tag: decision.current.tag_digests.get(tag) for tag in entry.tags}
        digest = sha256_digest(index)
        self._move_tags(client, entry, digest, index, OCI_INDEX, entry.tags)
        return digest, previous

    def read_back(self, entry: Entry, digest: str, tags: Sequence[str]) -> dict[str, RacedTag]:
        # A registry has no compare-and-swap for tags: reading them back is how a run learns that another writer
        # (a second publishing run, a person) moved one between this run's PUT and now.
        client = self._target.get(entry.target.api_host)
        raced: dict[str, RacedTag] = {}
        for tag in tags:
            try:
                held = client.head_manifest(entry.target.path, tag)
            except CiImagesError as exc:  # the tags have moved: a failed look back must not fail the entry
                log.warning(f"{entry.key}: could not read {entry.target.with_tag(tag)} back: {exc.message}")
                continue
            if held is None or held.digest != digest:
                raced[entry.target.with_tag(tag)] = _raced(client, entry, held.digest if held else None)
        return raced


def _raced(client: RegistryClient, entry: Entry, digest: str | None) -> RacedTag:
    """What another writer's digest is, for the lock file: its platforms, and the upstream it names."""
    if digest is None:
        return RacedTag(None)
    try:
        held = documents.read_held(client, entry.target.path, digest)
    except CiImagesError as exc:
        log.warning(f"{entry.key}: could not read {entry.target.with_digest(digest)}: {exc.message}")
        held = None
    if held is None:
        return RacedTag(digest, source=entry.source_ref)
    return RacedTag(
        digest,
        platforms=held.platforms,
        source=held.labels.get(BASE_NAME_LABEL) or entry.source_ref,
        source_digest=held.labels.get(SOURCE_DIGEST_LABEL),
    )


class DryRunPublisher:
    """--dry-run: everything up to publishing happens (plan, build, smoke tests); nothing is uploaded."""

    def stage_copy(self, entry: Entry, decision: Decision, fetched: tuple[str, bytes]) -> Copied | None:
        log.info(f"{entry.key}: dry run: would copy {entry.source_ref} to {entry.target} by digest")
        return None

    def publish_copy(self, entry: Entry, decision: Decision, copied: Copied) -> tuple[str, PreviousDigests]:
        raise AssertionError("a dry run copies nothing, so it has nothing to tag")

    def stage_assembled(self, entry: Entry, decision: Decision, assembled: Assembled) -> bool:
        log.info(
            f"{entry.key}: dry run: would upload {', '.join(assembled.platforms)} to {entry.target} by digest"
        )
        return False

    def publish_index(self, entry: Entry, decision: Decision, index: bytes) -> tuple[str, PreviousDigests]:
        raise AssertionError("a dry run uploads nothing, so it has nothing to tag")

    def publish(
        self,
        entry: Entry,
        decision: Decision,
        images: Mapping[str, str],
        bases: Mapping[str, BaseLayers] | None = None,
    ) -> tuple[str | None, PreviousDigests]:
        log.info(
            f"{entry.key}: dry run: would upload {', '.join(images)} and tag {', '.join(entry.tag_refs)}"
        )
        return None, {tag: decision.current.tag_digests.get(tag) for tag in entry.tags}

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        stale = {tag: tag_digests.get(tag) for tag in entry.tags if tag_digests.get(tag) != digest}
        log.info(f"{entry.key}: dry run: would move {', '.join(stale)} -> {digest}")
        return stale

    def read_back(self, entry: Entry, digest: str, tags: Sequence[str]) -> dict[str, RacedTag]:
        return {}  # nothing moved
