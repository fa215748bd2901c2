"""Upload an assembled image (``ci_images.assemble``) by digest: no engine in the path, no tag written.

Like crane's ``append`` pushing (google/go-containerregistry ``pkg/v1/remote/write.go``: blobs first, each skipped
when the registry has it, then the manifests): the base's layers are copied registry to registry from where the base
lives (HEAD on the target first; mounted when both are one registry; streamed otherwise, never held whole), the new
layers and configs are uploaded from this machine, and then every platform manifest and the index are PUT under
their own digests. Blobs go in parallel, the largest first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ci_images.oci import OCI_INDEX, sha256_digest
from ci_images.registry.copy import DEFAULT_JOBS, CopyCounts, Endpoint

if TYPE_CHECKING:
    from ci_images.assemble.image import PlatformImage


@dataclass(frozen=True)
class _Blob:
    digest: str
    size: int
    data: bytes | Path | None  # None: the base's, copied from the source repository


def _blobs(images: Sequence[PlatformImage]) -> list[_Blob]:
    """Every blob the images reference, once, largest first (so the long copies start early)."""
    found: dict[str, _Blob] = {}
    for image in images:
        for layer in image.base_layers:
            digest = str(layer["digest"])
            found.setdefault(digest, _Blob(digest, int(layer["size"]), None))
        for new in image.layers:
            found.setdefault(new.digest, _Blob(new.digest, new.size, new.path))
        found.setdefault(image.config_digest, _Blob(image.config_digest, len(image.config), image.config))
    return sorted(found.values(), key=lambda blob: -blob.size)


def upload_assembled(
    images: Sequence[PlatformImage],
    index: bytes | None,
    *,
    source: Endpoint,
    target: Endpoint,
    jobs: int = DEFAULT_JOBS,
) -> CopyCounts:
    """Put ``images`` (one per platform) into ``target`` by digest, their base layers copied from ``source`` (where
    the base lives), then ``index`` (an OCI index over them) by its digest when given. Returns what moved."""
    counts = CopyCounts()
    lock = threading.Lock()
    mount_from = source.repo if source.host == target.host and source.repo != target.repo else None

    def send(blob: _Blob) -> None:
        client = target.client()
        if blob.data is None:

            def stream() -> AbstractContextManager[Iterator[bytes]]:
                return source.client().open_blob(source.repo, blob.digest, size=blob.size)

            outcome = client.upload_blob_stream(
                target.repo, blob.digest, blob.size, stream, mount_from=mount_from
            )
        else:
            outcome = client.upload_blob(target.repo, blob.digest, blob.data)
        with lock:
            if outcome == "present":
                counts.blobs_present += 1
            elif outcome == "mounted":
                counts.blobs_mounted += 1
            else:
                counts.blobs_uploaded += 1
                counts.bytes_uploaded += blob.size

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="upload") as pool:
        list(pool.map(send, _blobs(images)))
    client = target.client()
    for image in images:  # blobs first: a registry refuses a manifest whose blobs it does not hold
        client.put_manifest(target.repo, image.manifest_digest, image.manifest, image.media_type)
        counts.manifests_copied += 1
    if index is not None:
        client.put_manifest(target.repo, sha256_digest(index), index, OCI_INDEX)
        counts.manifests_copied += 1
    return counts
