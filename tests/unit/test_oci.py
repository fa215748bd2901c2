"""Index building, platform strings and deterministic gzip: pure functions, no engine."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os

import pytest

from ci_images.errors import UsageError
from ci_images.registry.client import OCI_INDEX, OCI_MANIFEST
from ci_images.registry.oci import Descriptor, join_platform, make_index, split_platform
from ci_images.registry.push import gzip_deterministic


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


@pytest.mark.parametrize(
    ("spec", "platform"),
    [
        ({"os": "linux", "architecture": "amd64"}, "linux/amd64"),
        ({"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux/arm64"),
        ({"os": "linux", "architecture": "arm", "variant": "v7"}, "linux/arm/v7"),
    ],
)
def test_platform_strings(spec: dict[str, str], platform: str) -> None:
    assert join_platform(spec) == platform
    assert join_platform(split_platform(platform)) == platform


def test_split_platform_rejects_nonsense() -> None:
    with pytest.raises(UsageError, match="OS/ARCH"):
        split_platform("amd64")


def test_gzip_is_deterministic_and_round_trips() -> None:
    data = os.urandom(300_000) + b"x" * 2_000_000
    first, second = io.BytesIO(), io.BytesIO()
    plain1, digest1, size1 = gzip_deterministic(io.BytesIO(data), first)
    plain2, digest2, size2 = gzip_deterministic(io.BytesIO(data), second)
    assert first.getvalue() == second.getvalue()
    assert (plain1, digest1, size1) == (plain2, digest2, size2)
    assert plain1 == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest1 == "sha256:" + hashlib.sha256(first.getvalue()).hexdigest()
    assert size1 == len(first.getvalue())
    assert gzip.decompress(first.getvalue()) == data
    header = first.getvalue()[:10]
    assert header[3] == 0  # FLG: no file name, no comment, no extra field
    assert header[4:8] == b"\0\0\0\0"  # MTIME 0
