"""Publishing: the one step that changes the target registry. Dry runs swap in a publisher that only tells.

Per entry: upload each platform's image by digest (no tag is written), then write the multi-platform index under
every tag, the version tag first. Tags therefore move only once every platform is uploaded, and every tag always
points at a complete index. When moving stops part-way (a registry error, an interrupt), TagsPartlyMoved names the
tags that moved and those that did not; the next run's plan sees the split and moves the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ci_images.errors import Cancelled, CiImagesError, RegistryError, TagsPartlyMoved
from ci_images.log import log
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.plan.recipe import RECIPE_LABEL, SOURCE_DIGEST_LABEL
from ci_images.registry import oci
from ci_images.registry.client import RegistryClient, sha256_digest
from ci_images.registry.pool import ClientPool
from ci_images.registry.push import push_engine_image

if TYPE_CHECKING:
    from ci_images.engine.client import Engine

PreviousDigests = dict[str, str | None]


class Publisher(Protocol):
    def publish(
        self, entry: Entry, decision: Decision, images: Mapping[str, str]
    ) -> tuple[str | None, PreviousDigests]:
        """Upload ``images`` (platform -> engine image) and point every tag of ``entry`` at their index."""
        ...

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        """Point the tags of ``entry`` that do not hold ``digest`` at it."""
        ...


class RegistryPublisher:
    def __init__(
        self, engine: Callable[[], Engine], target: ClientPool, cancel: threading.Event | None = None
    ) -> None:
        self._engine = engine
        self._target = target
        self._cancel = cancel or threading.Event()

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
        self, entry: Entry, decision: Decision, images: Mapping[str, str]
    ) -> tuple[str | None, PreviousDigests]:
        client = self._target.get(entry.target.api_host)
        engine = self._engine()
        descriptors = []
        for platform in entry.platforms:
            self._check(f"uploading {platform}")
            log.info(f"{entry.key}: uploading {platform} to {entry.target}")
            descriptors.append(
                push_engine_image(engine, client, entry.target.path, images[platform], platform=platform)
            )
        annotations = {k: v for k, v in engine.image_labels(images[entry.platforms[0]]).items() if v}
        # What the next plan compares: also on mirrored images, whose labels are upstream's own.
        if decision.recipe:
            annotations[RECIPE_LABEL] = decision.recipe
        if decision.source_digest:
            annotations[SOURCE_DIGEST_LABEL] = decision.source_digest
        body, media_type = oci.make_index(descriptors, annotations)
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


class DryRunPublisher:
    """--dry-run: everything up to publishing happens (plan, build, smoke tests); nothing is uploaded."""

    def publish(
        self, entry: Entry, decision: Decision, images: Mapping[str, str]
    ) -> tuple[str | None, PreviousDigests]:
        log.info(
            f"{entry.key}: dry run: would upload {', '.join(images)} and tag {', '.join(entry.tag_refs)}"
        )
        return None, {tag: decision.current.tag_digests.get(tag) for tag in entry.tags}

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        stale = {tag: tag_digests.get(tag) for tag in entry.tags if tag_digests.get(tag) != digest}
        log.info(f"{entry.key}: dry run: would move {', '.join(stale)} -> {digest}")
        return stale
