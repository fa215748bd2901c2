"""Publishing: the one step that changes the target registry. Dry runs swap in a publisher that only tells.

Per entry: upload each platform's image by digest (no tag is written), then write the multi-platform index under
every tag. Tags therefore move only once every platform is uploaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from ci_images.errors import RegistryError
from ci_images.log import log
from ci_images.plan.decide import Decision
from ci_images.plan.entries import Entry
from ci_images.plan.recipe import RECIPE_LABEL, SOURCE_DIGEST_LABEL
from ci_images.registry import oci
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
    def __init__(self, engine: Callable[[], Engine], target: ClientPool) -> None:
        self._engine = engine
        self._target = target

    def publish(
        self, entry: Entry, decision: Decision, images: Mapping[str, str]
    ) -> tuple[str | None, PreviousDigests]:
        client = self._target.get(entry.target.api_host)
        engine = self._engine()
        descriptors = []
        for platform in entry.platforms:
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
        digest = oci.put_tags(client, entry.target.path, body, media_type, entry.tags)
        log.info(f"{entry.key}: {', '.join(entry.tag_refs)} -> {digest}")
        return digest, previous

    def retag(self, entry: Entry, digest: str, tag_digests: Mapping[str, str | None]) -> PreviousDigests:
        client = self._target.get(entry.target.api_host)
        got = client.get_manifest(entry.target.path, digest)
        if got is None:
            raise RegistryError(
                f"{entry.target.with_digest(digest)} vanished while retagging", fix="run again"
            )
        info, body = got
        moved: PreviousDigests = {}
        for tag in entry.tags:
            if tag_digests.get(tag) != digest:
                client.put_manifest(entry.target.path, tag, body, info.media_type)
                moved[tag] = tag_digests.get(tag)
                log.info(f"{entry.key}: moved {entry.target.with_tag(tag)} -> {digest}")
        return moved


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
