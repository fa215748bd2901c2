"""Layers compressed for a push: deterministic gzip, so identical layers give identical blobs. Pure."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

from ci_images.registry.push import gzip_deterministic


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
