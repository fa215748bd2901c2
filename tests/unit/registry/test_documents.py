"""The multi-platform index a push writes: pure, no registry."""

from __future__ import annotations

import json

import pytest

from ci_images.errors import UsageError
from ci_images.oci import OCI_INDEX, OCI_MANIFEST, Descriptor
from ci_images.registry.documents import make_index


def _desc(platform: str | None, digest_char: str = "a") -> Descriptor:
    return Descriptor(OCI_MANIFEST, "sha256:" + digest_char * 64, 500, platform)


def test_make_index_lists_platforms_and_annotations() -> None:
    body, media_type = make_index(
        [_desc("linux/amd64", "a"), _desc("linux/arm/v7", "b")],
        {"org.opencontainers.image.version": "3.11.7"},
    )
    assert media_type == OCI_INDEX
    document = json.loads(body)
    assert document == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + "a" * 64,
                "size": 500,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + "b" * 64,
                "size": 500,
                "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
            },
        ],
        "annotations": {"org.opencontainers.image.version": "3.11.7"},
    }
    # Same input, same bytes: the index digest is stable across runs.
    assert (
        make_index([_desc("linux/amd64", "a"), _desc("linux/arm/v7", "b")], dict(document["annotations"]))[0]
        == body
    )


def test_make_index_without_annotations_omits_the_key() -> None:
    body, _ = make_index([_desc("linux/amd64")], {})
    assert "annotations" not in json.loads(body)


def test_make_index_rejects_missing_or_duplicate_platforms() -> None:
    with pytest.raises(UsageError, match="has no platform"):
        make_index([_desc(None)], {})
    with pytest.raises(UsageError, match="platform twice"):
        make_index([_desc("linux/amd64", "a"), _desc("linux/amd64", "b")], {})
